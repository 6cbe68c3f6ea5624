"""The Recipient of a KMS request: its attestation document checked, its key taken, the answer sealed to it.

Every operation that takes a ``Recipient`` (GenerateRandom, Decrypt, GenerateDataKey) goes through here, so
each checks the document exactly as GenerateRandom always has:

- the document is verified against the configured root at the current time (``ValidationException`` naming
  the failed step; debug-mode documents pass, as at KMS: PCRs are for the key policy's conditions);
- its ``public_key`` must be a DER RSA SubjectPublicKeyInfo of 2048/3072/4096 bits with an exponent in NIST's
  range (``ValidationException``; the rules are :mod:`nitrokit._rsa`'s, shared with the CMS code and the
  enclave);
- the secret of the answer then leaves only as ``CiphertextForRecipient``, built by
  :func:`nitrokit.cms.encrypt_for_recipient` (KMS's CMS EnvelopedData shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import rsa

from nitrokit._rsa import RsaKeyError, load_rsa_spki
from nitrokit.attestation import AttestationError, Policy, Verifier
from nitrokit.cms import encrypt_for_recipient
from nitrokit.errors import InputTooLargeError
from nitrokit.kms.conditions import AttestationConditions
from nitrokit.kms.config import CustomKeyStore
from nitrokit.kms.errors import KmsServiceError

if TYPE_CHECKING:
    from nitrokit.kms._keys import KeyStore

__all__ = ["Context", "Recipient", "check_document", "recipient_key", "seal", "verify_recipient"]

# KMS checks the document, not the image: PCRs are for the key policy's conditions.
_ACCEPT_DEBUG = Policy.any_enclave_image(allow_debug=True)


@dataclass(frozen=True)
class Context:
    """What an operation needs from the server, read once per request."""

    verifier: Verifier
    conditions: AttestationConditions | None
    recipient_required: bool
    key_stores: Mapping[str, CustomKeyStore]
    caller: str
    keys: KeyStore | None = None
    now: datetime | None = None


@dataclass(frozen=True)
class Recipient:
    """A verified Recipient: the key to seal to and the document's PCRs (for the policy's conditions)."""

    public_key: rsa.RSAPublicKey
    pcrs: Mapping[int, bytes]


def verify_recipient(document: bytes, context: Context) -> Recipient:
    """Check ``document`` against the configured root now; the Recipient, or ValidationException."""
    return check_document(document, context.verifier, at=context.now)


def check_document(document: bytes, verifier: Verifier, *, at: datetime | None = None) -> Recipient:
    """Check ``document`` as KMS checks a Recipient's (also for ``kms-sim explain``): ValidationException."""
    try:
        result = verifier.verify(document, at=at, policy=_ACCEPT_DEBUG)
    except AttestationError as exc:  # every way a document can be bad, its size included
        # Within the API's 262144 bytes but over the parser's cap: said apart in the log.
        reason = ("attestation document too large" if isinstance(exc, InputTooLargeError)
                  else f"attestation {exc.step}")
        raise KmsServiceError("ValidationException", f"Invalid attestation document in Recipient: {exc}",
                              reason=reason) from None
    return Recipient(public_key=recipient_key(result.document.public_key), pcrs=result.document.pcrs)


def recipient_key(public_key: bytes | None) -> rsa.RSAPublicKey:
    if public_key is None:
        raise KmsServiceError("ValidationException", "The attestation document in Recipient has no public_key",
                              reason="public_key null")
    try:
        # KMS takes DER only here (the document carries bytes); the rules are the CMS code's and the enclave's.
        return load_rsa_spki(public_key, what="The public_key in the attestation document")
    except RsaKeyError as exc:
        raise KmsServiceError("ValidationException", str(exc),
                              reason=f"public_key of {len(public_key)} bytes: {exc.reason}") from None


def seal(secret: bytes, recipient: Recipient) -> bytes:
    """The CMS envelope of ``secret`` to the recipient's key."""
    return encrypt_for_recipient(secret, recipient.public_key)
