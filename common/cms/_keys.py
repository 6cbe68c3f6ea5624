"""Recipient keys for envelopes: what the CMS code accepts, and the recipient key id.

The rules themselves (sizes, exponent, SubjectPublicKeyInfo form) are :mod:`nitrokit._rsa`'s, shared with the
enclave's key pairs and the simulated KMS; here they raise :class:`UnsupportedKeyError`.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric import rsa

from nitrokit._rsa import RSA_KEY_SIZES, RsaKeyError, check_rsa_public_key, load_rsa_spki, spki_der
from nitrokit._rsa import check_rsa_size as _check_rsa_size
from nitrokit.cms.errors import UnsupportedKeyError

# KMS accepts RSA 2048/3072/4096 recipient keys; so do we, and nothing else (the public name of RSA_KEY_SIZES).
SUPPORTED_RSA_BITS = RSA_KEY_SIZES

__all__ = ["SUPPORTED_RSA_BITS", "check_rsa_size", "load_recipient_key", "private_key_id", "recipient_key_id",
           "spki_der"]


def check_rsa_size(key: rsa.RSAPublicKey | rsa.RSAPrivateKey, *, what: str) -> None:
    try:
        _check_rsa_size(key, what=what)
    except RsaKeyError as exc:
        raise UnsupportedKeyError(str(exc)) from None


def load_recipient_key(public_key: bytes | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """Accept an RSA public key object, or DER/PEM SubjectPublicKeyInfo bytes; refuse anything else."""
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            check_rsa_public_key(public_key, what="recipient key")
            return public_key
        if isinstance(public_key, bytes | bytearray | memoryview):
            return load_rsa_spki(bytes(public_key), what="recipient key", allow_pem=True)
    except RsaKeyError as exc:
        raise UnsupportedKeyError(str(exc)) from None
    raise UnsupportedKeyError(
        f"recipient key is a {type(public_key).__name__}, expected SubjectPublicKeyInfo bytes or an RSAPublicKey")


def recipient_key_id(public_key: bytes | rsa.RSAPublicKey) -> bytes:
    """The 32-byte recipient identifier KMS puts in the envelope: SHA-256 of the key's DER SPKI.

    ``public_key`` is an :class:`~cryptography.hazmat.primitives.asymmetric.rsa.RSAPublicKey` or DER/PEM
    SubjectPublicKeyInfo bytes; the id is computed over the canonical DER re-encoding either way.
    """
    return hashlib.sha256(spki_der(load_recipient_key(public_key))).digest()


def private_key_id(private_key: rsa.RSAPrivateKey) -> bytes:
    return hashlib.sha256(spki_der(private_key.public_key())).digest()
