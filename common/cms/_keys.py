"""Recipient keys: loading a SubjectPublicKeyInfo, the size policy, and the recipient key id."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from nitrokit.cms.errors import UnsupportedKeyError

# KMS accepts RSA 2048/3072/4096 recipient keys; so do we, and nothing else.
SUPPORTED_RSA_BITS = (2048, 3072, 4096)

_PEM_SPKI_LABEL = b"-----BEGIN PUBLIC KEY-----"

_KEY_LABELS: tuple[tuple[type, str], ...] = (
    (ed25519.Ed25519PublicKey, "an Ed25519 key"),
    (ed448.Ed448PublicKey, "an Ed448 key"),
    (x25519.X25519PublicKey, "an X25519 key"),
    (x448.X448PublicKey, "an X448 key"),
    (dsa.DSAPublicKey, "a DSA key"),
)


def spki_der(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_rsa_size(key: rsa.RSAPublicKey | rsa.RSAPrivateKey, *, what: str) -> None:
    if key.key_size not in SUPPORTED_RSA_BITS:
        raise UnsupportedKeyError(f"{what} is RSA-{key.key_size}, expected RSA 2048, 3072 or 4096 bits")


def load_recipient_key(public_key: bytes | rsa.RSAPublicKey) -> rsa.RSAPublicKey:
    """Accept an RSA public key object, or DER/PEM SubjectPublicKeyInfo bytes; refuse anything else."""
    if isinstance(public_key, rsa.RSAPublicKey):
        key = public_key
    elif isinstance(public_key, bytes | bytearray | memoryview):
        key = _load_spki(bytes(public_key))
    else:
        raise UnsupportedKeyError(
            f"recipient key is a {type(public_key).__name__}, expected SubjectPublicKeyInfo bytes or an "
            "RSAPublicKey"
        )
    check_rsa_size(key, what="recipient key")
    return key


def _load_spki(data: bytes) -> rsa.RSAPublicKey:
    stripped = data.strip()
    is_pem = stripped.startswith(b"-----BEGIN")
    if is_pem and not stripped.startswith(_PEM_SPKI_LABEL):
        # e.g. "BEGIN RSA PUBLIC KEY" (PKCS#1) or a certificate: not what KMS takes.
        raise UnsupportedKeyError("recipient key is PEM but not a 'PUBLIC KEY' (SubjectPublicKeyInfo)")
    try:
        loaded = (
            serialization.load_pem_public_key(stripped) if is_pem else serialization.load_der_public_key(data)
        )
    except (ValueError, TypeError):
        raise UnsupportedKeyError("recipient key is not a DER or PEM SubjectPublicKeyInfo") from None
    except Exception:  # cryptography raises UnsupportedAlgorithm for keys it knows but cannot use
        raise UnsupportedKeyError("recipient key uses an algorithm that is not supported") from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise UnsupportedKeyError(
            f"recipient key is {_describe(loaded)}, expected RSA 2048, 3072 or 4096 bits"
        )
    # load_der_public_key also takes a bare PKCS#1 RSAPublicKey; KMS wants a SubjectPublicKeyInfo.
    if not is_pem and spki_der(loaded) != data:
        raise UnsupportedKeyError("recipient key is not a DER SubjectPublicKeyInfo")
    return loaded


def _describe(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    for kind, label in _KEY_LABELS:
        if isinstance(key, kind):
            return label
    return f"a {type(key).__name__}"


def recipient_key_id(public_key: bytes | rsa.RSAPublicKey) -> bytes:
    """The 32-byte recipient identifier KMS puts in the envelope: SHA-256 of the key's DER SPKI.

    ``public_key`` is an :class:`~cryptography.hazmat.primitives.asymmetric.rsa.RSAPublicKey` or DER/PEM
    SubjectPublicKeyInfo bytes; the id is computed over the canonical DER re-encoding either way.
    """
    return hashlib.sha256(spki_der(load_recipient_key(public_key))).digest()


def private_key_id(private_key: rsa.RSAPrivateKey) -> bytes:
    return hashlib.sha256(spki_der(private_key.public_key())).digest()
