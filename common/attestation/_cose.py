"""COSE_Sign1 with ES384 as the NSM uses it: the Sig_structure and raw r||s signatures.

Public-key work is done by ``cryptography`` (OpenSSL); this module only frames bytes.
"""

from __future__ import annotations

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ES384 = -35
COSE_SIGN1_TAG = 18
P384_COORDINATE_BYTES = 48
ES384_SIGNATURE_BYTES = 2 * P384_COORDINATE_BYTES
PROTECTED_ES384 = cbor2.dumps({1: ES384})


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """The bytes that a COSE_Sign1 signature covers (RFC 9052 section 4.4), with empty external AAD."""
    return cbor2.dumps(["Signature1", protected, b"", payload])


def verify_es384(public_key: ec.EllipticCurvePublicKey, *, protected: bytes, payload: bytes,
                 signature: bytes) -> bool:
    """True if ``signature`` (raw r||s, 96 bytes) is a valid ES384 signature over the Sig_structure."""
    if len(signature) != ES384_SIGNATURE_BYTES:
        return False
    r = int.from_bytes(signature[:P384_COORDINATE_BYTES], "big")
    s = int.from_bytes(signature[P384_COORDINATE_BYTES:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


def sign_es384(private_key: ec.EllipticCurvePrivateKey, *, protected: bytes, payload: bytes) -> bytes:
    """Sign the Sig_structure and return the raw r||s signature (96 bytes)."""
    der = private_key.sign(sig_structure(protected, payload), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return r.to_bytes(P384_COORDINATE_BYTES, "big") + s.to_bytes(P384_COORDINATE_BYTES, "big")


def encode_sign1(*, protected: bytes, payload: bytes, signature: bytes, tagged: bool = False,
                 unprotected: dict[object, object] | None = None) -> bytes:
    """Encode a COSE_Sign1 array; untagged by default, as the NSM emits it."""
    message = [protected, unprotected if unprotected is not None else {}, payload, signature]
    return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, message) if tagged else message)
