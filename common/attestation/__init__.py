"""Parse and verify AWS Nitro Enclaves attestation documents.

The public API::

    from nitrokit.attestation import Verifier, Policy

    result = Verifier().verify(document_bytes, policy=Policy(pcrs={0: "..."}), at=None, max_age=None)
    result.document.pcrs[0], result.chain, result.checks   # a VerifiedAttestation holding a VerifiedDocument

``policy`` is required; ``Policy.any_enclave_image()`` pins no PCR. ``parse_document`` parses without
verifying and returns an ``UnverifiedDocument`` (for inspection only: nothing in it is trustworthy). Errors
are in :mod:`nitrokit.attestation.errors`, all subclasses of ``AttestationError``, size errors included.
"""

from nitrokit.attestation._parse import (
    MAX_DOCUMENT_BYTES,
    MAX_OPTIONAL_FIELD_BYTES,
    PCR_BYTES,
    PCR_COUNT,
    PCR_LENGTHS,
    parse_document,
)
from nitrokit.attestation.errors import (
    AttestationError,
    AttestationInputTooLargeError,
    CertificateValidityError,
    ChainError,
    DocumentTimeError,
    MalformedDocumentError,
    PolicyError,
    SignatureError,
    TrustRootError,
)
from nitrokit.attestation.models import AttestationDocument, UnverifiedDocument, VerifiedAttestation, VerifiedDocument
from nitrokit.attestation.policy import Policy
from nitrokit.attestation.roots import AWS_NITRO_ROOT_G1_SHA256, aws_nitro_root, load_root
from nitrokit.attestation.verifier import Verifier

__all__ = [
    "AWS_NITRO_ROOT_G1_SHA256",
    "MAX_DOCUMENT_BYTES",
    "MAX_OPTIONAL_FIELD_BYTES",
    "PCR_BYTES",
    "PCR_COUNT",
    "PCR_LENGTHS",
    "AttestationDocument",
    "AttestationError",
    "AttestationInputTooLargeError",
    "CertificateValidityError",
    "ChainError",
    "DocumentTimeError",
    "MalformedDocumentError",
    "Policy",
    "PolicyError",
    "SignatureError",
    "TrustRootError",
    "UnverifiedDocument",
    "VerifiedAttestation",
    "VerifiedDocument",
    "Verifier",
    "aws_nitro_root",
    "load_root",
    "parse_document",
]
