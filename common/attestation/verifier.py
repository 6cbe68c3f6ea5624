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

from nitrokit.attestation import _chain
from nitrokit.attestation._cose import ES384, verify_signature
from nitrokit.attestation._parse import parse_document
from nitrokit.attestation.errors import DocumentTimeError, SignatureError
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
        self._future_skew = future_skew
        # Parsed and checked once per process, like every chain certificate (a cold verify repeats none of it).
        self._trusted_root = _chain.trusted_root(self._root)
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
                      at: datetime) -> tuple[_chain.ParsedCertificate, ...]:
        """Return the verified chain, root first and signing certificate last (:func:`_chain.verify_chain`)."""
        return _chain.verify_chain(document.certificate, document.cabundle, root=self._trusted_root, at=at,
                                   links=self._links)

    @staticmethod
    def _verify_signature(document: AttestationDocument, *, signer: _chain.ParsedCertificate) -> None:
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
