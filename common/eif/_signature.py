"""The signature section of a signed EIF, as ``nitro-cli build-enclave --signing-certificate`` writes it.

The section is serde_cbor's encoding of ``Vec<PcrSignature>``: an array of maps
``{"signing_certificate": <PEM bytes>, "signature": <COSE_Sign1 bytes>}``. serde writes ``Vec<u8>`` as an
array of small integers, not a byte string, so both spellings are accepted here. nitro-cli writes exactly one
entry, the signature of PCR0; its COSE payload is ``{"register_index": 0, "register_value": <PCR0>}`` and the
algorithm follows the key's curve (P-256/ES256, P-384/ES384, P-521/ES512), with r||s signatures.

PCR8 = SHA-384(48 zero bytes || SHA-384(DER of the signing certificate)): nitro-cli reads the PEM certificate,
converts it to DER and extends a zeroed register with its digest (image-format ``EifBuilder::measure`` and
``EifReader::from_eif``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.utils import CryptographyDeprecationWarning

from nitrokit.attestation._cose import COSE_SIGN1_TAG, sig_structure
from nitrokit.cbor import CborError, decode_exactly, kind
from nitrokit.eif.errors import EifSignatureError
from nitrokit.eif.models import EifSignature
from nitrokit.text import escaped

MAX_CBOR_DEPTH = 6
MAX_CERTIFICATE_BYTES = 16 * 1024
_ALG_LABEL = 1
_CRIT_LABEL = 2
_CERT_KEY = "signing_certificate"
_SIG_KEY = "signature"
_INDEX_KEY = "register_index"
_VALUE_KEY = "register_value"
SIGNED_PCR_INDEX = 0


@dataclass(frozen=True)
class _Curve:
    name: str
    alg: int
    hash: hashes.HashAlgorithm
    coordinate_bytes: int


# The pairs aws-nitro-enclaves-cose accepts (CoseSign1::curve_to_parameters).
_CURVES = {
    "secp256r1": _Curve("ES256", -7, hashes.SHA256(), 32),
    "secp384r1": _Curve("ES384", -35, hashes.SHA384(), 48),
    "secp521r1": _Curve("ES512", -36, hashes.SHA512(), 66),
}


def pcr_extend_from_zero(digest: bytes) -> bytes:
    """The value of a zeroed SHA-384 PCR extended once with ``digest`` (what EifHasher's tpm_extend does)."""
    return hashlib.sha384(bytes(48) + digest).digest()


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
        keys = sorted(repr(k) for k in entry)
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
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name not in _CURVES:
        raise EifSignatureError("signing certificate key is not an EC P-256, P-384 or P-521 key")
    curve = _CURVES[public_key.curve.name]
    if not verify:
        return EifSignature(certificate=certificate, algorithm=curve.name, verified=False)

    message = _decode_exactly(cose, what="PCR0 signature")
    if isinstance(message, cbor2.CBORTag):
        if message.tag != COSE_SIGN1_TAG:
            raise EifSignatureError(f"PCR0 signature: CBOR tag {message.tag}, expected {COSE_SIGN1_TAG} (COSE_Sign1)")
        message = message.value
    if not isinstance(message, list | tuple) or len(message) != 4:
        raise EifSignatureError("PCR0 signature: not a 4-element COSE_Sign1 array")
    protected, unprotected, payload, signature = message
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise EifSignatureError("PCR0 signature: protected header, payload and signature must be byte strings")
    if not isinstance(unprotected, Mapping):
        raise EifSignatureError("PCR0 signature: unprotected header is not a map")
    _check_protected(protected, curve)

    if len(signature) != 2 * curve.coordinate_bytes:
        raise EifSignatureError(
            f"PCR0 signature: {len(signature)} bytes, expected {2 * curve.coordinate_bytes} (r||s for {curve.name})")
    r = int.from_bytes(signature[: curve.coordinate_bytes], "big")
    s = int.from_bytes(signature[curve.coordinate_bytes :], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), sig_structure(protected, payload), ec.ECDSA(curve.hash))
    except InvalidSignature:
        raise EifSignatureError("PCR0 signature does not verify with the signing certificate's key") from None

    # Only now is the payload authentic; compare what was signed with what we measured.
    signed = _decode_exactly(payload, what="PCR0 signature payload")
    if not isinstance(signed, Mapping) or set(signed) != {_INDEX_KEY, _VALUE_KEY}:
        raise EifSignatureError(f"PCR0 signature payload: expected a map of {_INDEX_KEY!r} and {_VALUE_KEY!r}")
    index = signed[_INDEX_KEY]
    if type(index) is not int or index != SIGNED_PCR_INDEX:
        raise EifSignatureError(f"PCR0 signature payload: register_index is {index!r}, expected 0")
    value = _byte_array(signed[_VALUE_KEY], field=_VALUE_KEY)
    if value != pcr0:
        raise EifSignatureError(
            f"the signed PCR0 {value.hex()} is not this image's PCR0 {pcr0.hex()} "
            "(the image was changed after it was signed)")
    return EifSignature(certificate=certificate, algorithm=curve.name, verified=True)


def _check_protected(protected: bytes, curve: _Curve) -> None:
    header = _decode_exactly(protected, what="PCR0 signature protected header")
    if not isinstance(header, Mapping):
        raise EifSignatureError("PCR0 signature: protected header is not a map")
    if _CRIT_LABEL in header:
        raise EifSignatureError("PCR0 signature: protected header has critical parameters nitrokit does not know")
    alg = header.get(_ALG_LABEL)
    if type(alg) is not int or alg != curve.alg:
        raise EifSignatureError(
            f"PCR0 signature: algorithm {alg!r} does not match the certificate's key ({curve.name}, {curve.alg})")


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

