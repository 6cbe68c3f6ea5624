"""Errors raised while parsing and verifying attestation documents.

Each class is one step of verification, so a caller can tell *why* a document was refused::

    try:
        Verifier().verify(document)
    except CertificateValidityError:   # a certificate expired or is not yet valid
        ...
    except AttestationError:           # anything else about the document
        ...

Every message names the step and the field. ``except AttestationError`` catches every way a document can be
bad, its size included (:class:`AttestationInputTooLargeError` is also an
:class:`~nitrokit.errors.InputTooLargeError`, for code that handles every size cap alike).
"""

from __future__ import annotations

from nitrokit.errors import InputTooLargeError, NitrokitError


class AttestationError(NitrokitError):
    """Base class: the attestation document was refused."""

    step = "attestation"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        prefix = f"{self.step}: {field}: " if field else f"{self.step}: "
        super().__init__(prefix + message)


class MalformedDocumentError(AttestationError):
    """The bytes are not a well-formed COSE_Sign1 attestation document with a valid payload."""

    step = "parse"


class AttestationInputTooLargeError(InputTooLargeError, MalformedDocumentError):
    """The document is over :data:`~nitrokit.attestation.MAX_DOCUMENT_BYTES`; refused before parsing."""

    def __init__(self, what: str, size: int | None, limit: int) -> None:
        # InputTooLargeError first in the MRO: its message goes through AttestationError's "parse: " prefix.
        super().__init__(what, size, limit)
        self.field = "document"


class ChainError(AttestationError):
    """The certificate chain does not lead from the trusted root to the signing certificate."""

    step = "chain"


class CertificateValidityError(ChainError):
    """A certificate in the chain is expired or not yet valid at the verification time."""

    step = "chain validity"


class DocumentTimeError(AttestationError):
    """The document's timestamp is in the future or older than the allowed maximum age."""

    step = "time"


class SignatureError(AttestationError):
    """The COSE signature does not verify with the signing certificate's key."""

    step = "signature"


class PolicyError(AttestationError):
    """The document is authentic but does not satisfy the caller's policy (PCRs, nonce, debug mode...)."""

    step = "policy"


class TrustRootError(AttestationError):
    """The trust root could not be loaded or failed its fingerprint check."""

    step = "root"
