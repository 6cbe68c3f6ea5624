"""Verify Nitro attestation documents: one readable sequence of named steps.

    result = Verifier().verify(document_bytes, policy=Policy(pcrs={0: "ab12..."}))

1. parse      strict COSE_Sign1 + payload checks (:mod:`nitrokit.attestation._parse`)
2. time       the document is not from the future, and not older than ``max_age`` if given
3. chain      trusted root -> cabundle intermediates -> signing certificate, all valid at ``at``
4. signature  ES384 over the COSE Sig_structure with the signing certificate's key
5. policy     the caller's expectations (:class:`Policy`); debug mode refused by default

Only the configured root is trusted; cabundle entries are untrusted intermediates. Verified certificate
links are cached (bounded, keyed by the DER bytes of both certificates) and only reused after each
certificate's validity at ``at`` has been checked again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nitrokit.attestation import _chain
from nitrokit.attestation._cose import ES384, verify_signature
from nitrokit.attestation._parse import parse_document
from nitrokit.attestation.errors import ChainError, DocumentTimeError, SignatureError, TrustRootError
from nitrokit.attestation.models import AttestationDocument, VerificationResult
from nitrokit.attestation.policy import Policy
from nitrokit.attestation.roots import RootSource, aws_nitro_root, load_root
from nitrokit.errors import UsageError

DEFAULT_FUTURE_SKEW = timedelta(minutes=5)
DEFAULT_CACHE_SIZE = 1024


class Verifier:
    """Verifies attestation documents against one trust root.

    A Verifier is cheap to keep and safe to share between threads; keep one to benefit from its cache.
    """

    def __init__(
        self,
        *,
        root: RootSource | None = None,
        future_skew: timedelta = DEFAULT_FUTURE_SKEW,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        if not isinstance(future_skew, timedelta) or future_skew < timedelta(0):
            raise UsageError("future_skew must be a non-negative timedelta")
        if cache_size < 0:
            raise UsageError("cache_size must not be negative")
        self._root = aws_nitro_root() if root is None else load_root(root)
        self._root_der = self._root.public_bytes(serialization.Encoding.DER)
        self._future_skew = future_skew
        try:
            root_key = _chain.check_algorithms(self._root, position="root")
        except ChainError as exc:
            raise TrustRootError(str(exc), field="root") from None
        self._checked_root = _chain.CheckedCertificate(self._root, root_key)
        self._root_checked_for: set[int] = set()
        self._links = _chain.LinkCache(cache_size)

    @property
    def root(self) -> x509.Certificate:
        return self._root

    def verify(
        self,
        document: bytes | AttestationDocument,
        *,
        at: datetime | None = None,
        max_age: timedelta | None = None,
        policy: Policy | None = None,
    ) -> VerificationResult:
        """Verify ``document`` (raw bytes or an already parsed document) at time ``at`` (default: now).

        Raises a subclass of :class:`~nitrokit.attestation.errors.AttestationError` naming the failed step.
        """
        at = _resolve_time(at)
        if max_age is not None and (not isinstance(max_age, timedelta) or max_age < timedelta(0)):
            raise UsageError("max_age must be a non-negative timedelta")
        if policy is None:
            policy = Policy()
        elif not isinstance(policy, Policy):
            raise UsageError(f"policy must be a Policy, got {type(policy).__name__}")

        parsed = document if isinstance(document, AttestationDocument) else parse_document(document)
        checks = ["parse"]
        self._check_time(parsed, at=at, max_age=max_age)
        checks.append("time")
        chain = self._verify_chain(parsed, at=at)
        checks.append("chain")
        self._verify_signature(parsed, signer=chain[-1])
        checks.append("signature")
        for check in policy.checks():
            check.verify(parsed)
            checks.append(f"policy: {check.name}")
        return VerificationResult(document=parsed, chain=tuple(link.certificate for link in chain), verified_at=at,
                                  checks=tuple(checks))

    def _check_time(self, document: AttestationDocument, *, at: datetime, max_age: timedelta | None) -> None:
        issued = document.issued_at
        # Differences, not sums: a sum near datetime.max would overflow.
        if issued - at > self._future_skew:
            raise DocumentTimeError(f"{issued.isoformat()} is later than the verification time {at.isoformat()} "
                                    f"plus the allowed skew of {self._future_skew}", field="timestamp")
        if max_age is not None and at - issued > max_age:
            raise DocumentTimeError(f"{issued.isoformat()} is older than the maximum age {max_age} "
                                    f"at {at.isoformat()}", field="timestamp")

    def _verify_chain(self, document: AttestationDocument, *,
                      at: datetime) -> tuple[_chain.CheckedCertificate, ...]:
        """Return the verified chain, root first and signing certificate last."""
        intermediates_der = list(document.cabundle)
        # AWS puts the root first in cabundle. It is never trusted from there: it must be our root, or we
        # treat it as one more intermediate below our root.
        if intermediates_der[0] == self._root_der:
            intermediates_der = intermediates_der[1:]
        else:
            first = _chain.load_der(intermediates_der[0], position="cabundle[0]")
            if first.subject == first.issuer and first.subject == self._root.subject:
                raise ChainError("a root with the trusted root's name but different bytes (foreign root)",
                                 field="cabundle[0]")
            if first.subject == first.issuer:
                raise ChainError(f"self-signed certificate {first.subject.rfc4514_string()!r} is not the "
                                 "trusted root", field="cabundle[0]")

        offset = len(document.cabundle) - len(intermediates_der)
        positions = [f"cabundle[{offset + i}]" for i in range(len(intermediates_der))] + ["certificate"]
        ders = [*intermediates_der, document.certificate]
        last = len(ders) - 1

        _chain.check_validity(self._root, at, position="root")
        self._check_root_profile(cas_below=last)
        chain: list[_chain.CheckedCertificate] = [self._checked_root]
        issuer_der = self._root_der
        for index, (der, position) in enumerate(zip(ders, positions, strict=True)):
            cas_below = last - index - 1  # -1 marks the signing certificate
            link = (der, issuer_der, cas_below)
            checked = self._links.get(link)
            if checked is None:
                checked = self._check_link(der, chain[-1].certificate, position=position, cas_below=cas_below, at=at)
                self._links.add(link, checked)
            else:
                _chain.check_validity(checked.certificate, at, position=position)
            chain.append(checked)
            issuer_der = der
        return tuple(chain)

    @staticmethod
    def _check_link(der: bytes, issuer: x509.Certificate, *, position: str, cas_below: int,
                    at: datetime) -> _chain.CheckedCertificate:
        cert = _chain.load_der(der, position=position)
        key = _chain.check_algorithms(cert, position=position)
        _chain.check_validity(cert, at, position=position)
        if cas_below < 0:
            _chain.check_leaf_profile(cert, position=position)
        else:
            _chain.check_ca_profile(cert, position=position, cas_below=cas_below)
        _chain.check_issued_by(cert, issuer, position=position)
        return _chain.CheckedCertificate(cert, key)

    def _check_root_profile(self, *, cas_below: int) -> None:
        # No lock: set.add is atomic under the GIL, and a race only repeats a cheap, idempotent check.
        if cas_below not in self._root_checked_for:
            _chain.check_ca_profile(self._root, position="root", cas_below=cas_below)
            self._root_checked_for.add(cas_below)

    @staticmethod
    def _verify_signature(document: AttestationDocument, *, signer: _chain.CheckedCertificate) -> None:
        if not verify_signature(signer.public_key, algorithm=ES384, protected=document.protected,
                                payload=document.payload, signature=document.signature):
            raise SignatureError("does not verify with the signing certificate's key", field="COSE signature")


def _resolve_time(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if not isinstance(at, datetime):
        raise UsageError(f"at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise UsageError("at must be timezone-aware (for example datetime.now(timezone.utc))")
    return at.astimezone(UTC)
