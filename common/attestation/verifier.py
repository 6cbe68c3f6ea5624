"""Verify Nitro attestation documents: one readable sequence of named steps.

    result = Verifier().verify(document_bytes, policy=Policy(pcrs={0: "ab12..."}))
    result.document  # a VerifiedDocument

1. parse      strict COSE_Sign1 + payload checks (:mod:`nitrokit.attestation._parse`), always from bytes: an
              :class:`UnverifiedDocument` passed in is parsed again from its ``encoded`` bytes
2. time       the document is not later than ``at`` plus the skew, and not older than ``max_age`` if given
3. chain      trusted root -> cabundle intermediates -> signing certificate, all valid at ``at``, or at
              the document's timestamp when that is ahead of ``at`` within the skew (so the leaf's notBefore
              gets the same skew), and the timestamp within the signing certificate's validity
4. signature  ES384 over the COSE Sig_structure with the signing certificate's key
5. policy     the caller's expectations (:class:`Policy`, required: ``Policy.any_enclave_image()`` says
              "no PCR pinned" out loud); debug mode refused by default

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
from nitrokit.attestation.models import AttestationDocument, UnverifiedDocument, VerifiedAttestation, verified_copy
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
        policy: Policy,
        at: datetime | None = None,
        max_age: timedelta | None = None,
    ) -> VerifiedAttestation:
        """Verify ``document`` at time ``at`` (default: now) under ``policy``; return what was verified.

        ``document`` is the raw bytes, or a document from ``parse_document`` (parsed again from its
        ``encoded`` bytes: every verified field comes from the signed bytes). ``policy`` is required; a
        policy that pins no PCR is :meth:`Policy.any_enclave_image`. Raises a subclass of
        :class:`~nitrokit.attestation.errors.AttestationError` naming the failed step.
        """
        at = _resolve_time(at)
        if max_age is not None and (not isinstance(max_age, timedelta) or max_age < timedelta(0)):
            raise UsageError("max_age must be a non-negative timedelta")
        if not isinstance(policy, Policy):
            raise UsageError(f"policy must be a Policy (Policy.any_enclave_image() to pin no PCR), got "
                             f"{type(policy).__name__}")

        # Never the object's fields: they are derived again from the bytes the signature covers.
        parsed = parse_document(document.encoded if isinstance(document, AttestationDocument) else document)
        checks = ["parse"]
        self._check_time(parsed, at=at, max_age=max_age)
        checks.append("time")
        # A verifier whose clock is behind (within the skew, checked above) accepts a document "from the
        # future", so it must accept the leaf issued just before it too: the chain is checked at the document's
        # time then. The skew on notBefore is the document's, and the timestamp must lie in the leaf's validity.
        chain = self._verify_chain(parsed, at=max(at, parsed.issued_at))
        _check_within_validity(parsed, chain[-1].certificate)
        checks.append("chain")
        self._verify_signature(parsed, signer=chain[-1])
        checks.append("signature")
        for check in policy.checks():
            check.verify(parsed)
            checks.append(f"policy: {check.name}")
        return VerifiedAttestation(document=verified_copy(parsed), chain=tuple(link.certificate for link in chain),
                                   verified_at=at, checks=tuple(checks))

    def _check_time(self, document: UnverifiedDocument, *, at: datetime, max_age: timedelta | None) -> None:
        issued = document.issued_at
        # Differences, not sums: a sum near datetime.max would overflow.
        if issued - at > self._future_skew:
            raise DocumentTimeError(f"{issued.isoformat()} is later than the verification time {at.isoformat()} "
                                    f"plus the allowed skew of {self._future_skew}", field="timestamp")
        if max_age is not None and at - issued > max_age:
            raise DocumentTimeError(f"{issued.isoformat()} is older than the maximum age {max_age} "
                                    f"at {at.isoformat()}", field="timestamp")

    def _verify_chain(self, document: UnverifiedDocument, *,
                      at: datetime) -> tuple[_chain.ParsedCertificate, ...]:
        """Return the verified chain, root first and signing certificate last (:func:`_chain.verify_chain`)."""
        return _chain.verify_chain(document.certificate, document.cabundle, root=self._trusted_root, at=at,
                                   links=self._links)

    @staticmethod
    def _verify_signature(document: UnverifiedDocument, *, signer: _chain.ParsedCertificate) -> None:
        if not verify_signature(signer.public_key, algorithm=ES384, protected=document.protected,
                                payload=document.payload, signature=document.signature):
            raise SignatureError("does not verify with the signing certificate's key", field="COSE signature")


def _check_within_validity(document: UnverifiedDocument, signer: x509.Certificate) -> None:
    """The document was issued while its signing certificate was valid (the NSM signs with a current leaf)."""
    issued = document.issued_at
    not_before, not_after = signer.not_valid_before_utc, signer.not_valid_after_utc
    if not not_before <= issued <= not_after:
        raise DocumentTimeError(f"{issued.isoformat()} is outside the signing certificate's validity "
                                f"{not_before.isoformat()} .. {not_after.isoformat()}", field="timestamp")


def _resolve_time(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if not isinstance(at, datetime):
        raise UsageError(f"at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise UsageError("at must be timezone-aware (for example datetime.now(timezone.utc))")
    return at.astimezone(UTC)
