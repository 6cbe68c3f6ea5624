"""The signature section of a signed EIF, as ``nitro-cli build-enclave --signing-certificate`` writes it.

The section is serde_cbor's encoding of ``Vec<PcrSignature>``: an array of maps
``{"signing_certificate": <PEM bytes>, "signature": <COSE_Sign1 bytes>}``. serde writes ``Vec<u8>`` as an
array of small integers, not a byte string, so both spellings are accepted here. nitro-cli writes exactly one
entry, the signature of PCR0; its COSE payload is ``{"register_index": 0, "register_value": <PCR0>}`` and the
algorithm follows the key's curve (P-256/ES256, P-384/ES384, P-521/ES512), with r||s signatures. The COSE_Sign1
itself is decoded and checked by :mod:`nitrokit.attestation._cose`, under the same rules as attestation documents.

PCR8 = SHA-384(48 zero bytes || SHA-384(DER of the signing certificate)): nitro-cli reads the PEM certificate,
converts it to DER and extends a zeroed register with its digest (image-format ``EifBuilder::measure`` and
``EifReader::from_eif``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning

from nitrokit.attestation import PCR_BYTES
from nitrokit.attestation._cose import ALGORITHMS_BY_CURVE, CoseError, decode_sign1, verify_signature
from nitrokit.cbor import CborError, decode_exactly, kind, shown
from nitrokit.eif.errors import EifSignatureError
from nitrokit.eif.models import EifSignature
from nitrokit.text import escaped

MAX_CBOR_DEPTH = 6
MAX_CERTIFICATE_BYTES = 16 * 1024
_CERT_KEY = "signing_certificate"
_SIG_KEY = "signature"
_INDEX_KEY = "register_index"
_VALUE_KEY = "register_value"
SIGNED_PCR_INDEX = 0


def pcr_extend_from_zero(digest: bytes) -> bytes:
    """The value of a zeroed SHA-384 PCR extended once with ``digest`` (what EifHasher's tpm_extend does)."""
    return hashlib.sha384(bytes(PCR_BYTES) + digest).digest()


def pcr8_for_certificate(certificate: x509.Certificate) -> bytes:
    """PCR8 of an image signed with ``certificate`` (same value as ``nitro-cli pcr --signing-certificate``)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return pcr_extend_from_zero(hashlib.sha384(der).digest())


def parse_signature_section(data: bytes) -> tuple[x509.Certificate, bytes]:
    """Return the signing certificate and the COSE_Sign1 bytes of the one PCR signature in ``data``."""
    top = _decode_exactly(data, what="signature section")
    if not isinstance(top, list | tuple):
        raise EifSignatureError(f"signature section: expected an array, got {kind(top)}")
    if len(top) != 1:
        raise EifSignatureError(
            f"signature section: {len(top)} PCR signatures, expected exactly one (PCR0, as nitro-cli writes)")
    entry = top[0]
    if not isinstance(entry, Mapping):
        raise EifSignatureError(f"signature section: entry is {kind(entry)}, expected a map")
    if set(entry) != {_CERT_KEY, _SIG_KEY}:
        keys = ", ".join(shown(key) for key in list(entry)[:4]) + (", ..." if len(entry) > 4 else "")
        raise EifSignatureError(f"signature section: entry keys {keys}, expected {_CERT_KEY!r} and {_SIG_KEY!r}")
    pem = _byte_array(entry[_CERT_KEY], field=_CERT_KEY)
    cose = _byte_array(entry[_SIG_KEY], field=_SIG_KEY)
    if len(pem) > MAX_CERTIFICATE_BYTES:
        raise EifSignatureError(f"signing certificate is {len(pem)} bytes, over {MAX_CERTIFICATE_BYTES}")
    try:
        with warnings.catch_warnings():
            # A non-positive serial number only earns a deprecation warning today; nitro-cli accepts it too.
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certificates = x509.load_pem_x509_certificates(pem)
    except (ValueError, x509.InvalidVersion):
        raise EifSignatureError("signing certificate is not a PEM X.509 certificate") from None
    if len(certificates) != 1:
        raise EifSignatureError(f"signing certificate field holds {len(certificates)} certificates, expected one")
    certificate = certificates[0]
    # cryptography decodes certificate fields lazily; decode everything used later now, so a malformed key,
    # name or date is this typed error here and not a ValueError somewhere else (found by fuzzing).
    try:
        certificate.public_key()
        certificate.subject.rfc4514_string()
        certificate.issuer.rfc4514_string()
        _ = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise EifSignatureError(f"signing certificate cannot be decoded: {escaped(str(exc), 80)}") from None
    return certificate, cose


def check_pcr0_signature(certificate: x509.Certificate, cose: bytes, *, pcr0: bytes, verify: bool) -> EifSignature:
    """Check the COSE_Sign1 over PCR0 with the certificate's key; raise :class:`EifSignatureError` if it fails."""
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in ALGORITHMS_BY_CURVE:
        raise EifSignatureError("signing certificate key is not an EC P-256, P-384 or P-521 key")
    algorithm = ALGORITHMS_BY_CURVE[public_key.curve.name]
    if not verify:
        return EifSignature(certificate=certificate, algorithm=algorithm.name, verified=False)

    # The framing rules are the attestation parser's (one shared implementation), with the key's algorithm.
    try:
        message = decode_sign1(cose, algorithms=(algorithm,), max_depth=MAX_CBOR_DEPTH)
    except CoseError as exc:
        raise EifSignatureError(f"PCR0 signature: {exc}") from None
    if not verify_signature(public_key, algorithm=algorithm, protected=message.protected, payload=message.payload,
                            signature=message.signature):
        raise EifSignatureError("PCR0 signature does not verify with the signing certificate's key")

    # Only now is the payload authentic; compare what was signed with what we measured.
    signed = _decode_exactly(message.payload, what="PCR0 signature payload")
    if not isinstance(signed, Mapping) or set(signed) != {_INDEX_KEY, _VALUE_KEY}:
        raise EifSignatureError(f"PCR0 signature payload: expected a map of {_INDEX_KEY!r} and {_VALUE_KEY!r}")
    index = signed[_INDEX_KEY]
    if type(index) is not int or index != SIGNED_PCR_INDEX:
        raise EifSignatureError(f"PCR0 signature payload: register_index is {shown(index)}, expected 0")
    value = _byte_array(signed[_VALUE_KEY], field=_VALUE_KEY)
    if value != pcr0:
        raise EifSignatureError(
            f"the signed PCR0 {value.hex()} is not this image's PCR0 {pcr0.hex()} "
            "(the image was changed after it was signed)")
    return EifSignature(certificate=certificate, algorithm=algorithm.name, verified=True)


def _byte_array(value: object, *, field: str) -> bytes:
    """serde's ``Vec<u8>``: an array of integers 0..255 (or, leniently, a CBOR byte string)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, list | tuple):
        if all(type(item) is int and 0 <= item <= 255 for item in value):
            return bytes(value)
        raise EifSignatureError(f"{field}: array holds something other than bytes 0..255")
    raise EifSignatureError(f"{field}: expected a byte array, got {kind(value)}")


def _decode_exactly(data: bytes, *, what: str) -> Any:
    try:
        return decode_exactly(data, max_depth=MAX_CBOR_DEPTH)
    except CborError as exc:
        raise EifSignatureError(f"{what}: {exc}") from None
