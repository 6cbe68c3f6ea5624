"""RSA keys as KMS takes them, checked in one place: the sizes, the public exponent, the SubjectPublicKeyInfo form.

KMS encrypts CiphertextForRecipient to an RSA 2048, 3072 or 4096-bit key given as a DER SubjectPublicKeyInfo.
Every side that touches such a key goes through here: the CMS envelope code (recipient and private keys), the
enclave's ephemeral key pairs, and the simulated KMS (the attestation document's ``public_key``). The
functions raise :class:`RsaKeyError`; each caller re-raises it as its own typed error. Messages name the key's
size or type, never its bytes.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from nitrokit.errors import NitrokitError

#: The RSA sizes KMS accepts for a Recipient key, and the only ones nitrokit makes or takes.
RSA_KEY_SIZES = (2048, 3072, 4096)
DEFAULT_RSA_KEY_SIZE = 2048
#: The exponent of the keys nitrokit generates.
PUBLIC_EXPONENT = 65537
# NIST SP 800-56B rev. 2, 6.2.1: e odd, 2**16 < e < 2**256. A tiny e (e = 1 above all) lets anyone undo OAEP.
MIN_PUBLIC_EXPONENT = 2**16 + 1
MAX_PUBLIC_EXPONENT = 2**256 - 1

#: "RSA 2048, 3072 or 4096 bits", for messages.
SIZES_TEXT = "RSA " + ", ".join(map(str, RSA_KEY_SIZES[:-1])) + f" or {RSA_KEY_SIZES[-1]} bits"
_PEM_SPKI_LABEL = b"-----BEGIN PUBLIC KEY-----"
_KEY_LABELS: tuple[tuple[type, str], ...] = (
    (ed25519.Ed25519PublicKey, "an Ed25519 key"),
    (ed448.Ed448PublicKey, "an Ed448 key"),
    (x25519.X25519PublicKey, "an X25519 key"),
    (x448.X448PublicKey, "an X448 key"),
    (dsa.DSAPublicKey, "a DSA key"),
)


class RsaKeyError(NitrokitError):
    """An RSA key (or what should be one) broke a rule; callers re-raise it as their own typed error.

    ``reason`` is a short label for logs ("RSA-1024", "not SPKI", "exponent").
    """

    def __init__(self, message: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(message)


def check_rsa_bits(bits: object, *, what: str) -> int:
    """``bits`` if it is one of :data:`RSA_KEY_SIZES` (an int, not a bool or float), else :class:`RsaKeyError`."""
    if type(bits) is not int or bits not in RSA_KEY_SIZES:
        shown = f"RSA-{bits}" if type(bits) is int else f"size {bits!r}"
        raise RsaKeyError(f"{what}: {shown} is not allowed (use {SIZES_TEXT})", reason="key size")
    return bits


def check_rsa_size(key: rsa.RSAPublicKey | rsa.RSAPrivateKey, *, what: str) -> None:
    """Refuse a key whose modulus is not one of :data:`RSA_KEY_SIZES` bits (cheap: no public numbers read)."""
    if key.key_size not in RSA_KEY_SIZES:
        raise RsaKeyError(f"{what}: RSA-{key.key_size} is not allowed (use {SIZES_TEXT})",
                          reason=f"RSA-{key.key_size}")


def check_rsa_public_key(key: rsa.RSAPublicKey, *, what: str) -> None:
    """Refuse a public key of another size, or whose exponent is outside NIST's range (or even)."""
    check_rsa_size(key, what=what)
    exponent = key.public_numbers().e
    if exponent % 2 == 0 or not MIN_PUBLIC_EXPONENT <= exponent <= MAX_PUBLIC_EXPONENT:
        raise RsaKeyError(f"{what}: the public exponent is not an odd number from 65537 to 2**256 - 1",
                          reason="exponent")


def spki_der(public_key: rsa.RSAPublicKey) -> bytes:
    """The key's canonical DER SubjectPublicKeyInfo."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_rsa_spki(data: bytes, *, what: str, allow_pem: bool = False) -> rsa.RSAPublicKey:
    """An allowed RSA public key from DER SubjectPublicKeyInfo bytes (or PEM ``PUBLIC KEY`` if ``allow_pem``).

    PKCS#1 ``RSAPublicKey`` (DER or ``BEGIN RSA PUBLIC KEY``), certificates, other key types and anything with
    bytes after the structure are refused: KMS takes a SubjectPublicKeyInfo.
    """
    stripped = data.strip()
    is_pem = allow_pem and stripped.startswith(b"-----BEGIN")
    if is_pem and not stripped.startswith(_PEM_SPKI_LABEL):
        raise RsaKeyError(f"{what} is PEM but not a 'PUBLIC KEY' (SubjectPublicKeyInfo)", reason="not SPKI")
    try:
        loaded = serialization.load_pem_public_key(stripped) if is_pem else serialization.load_der_public_key(data)
    except (ValueError, TypeError):
        form = "a DER or PEM" if allow_pem else "a DER"
        raise RsaKeyError(f"{what} is not {form} SubjectPublicKeyInfo", reason="not SPKI") from None
    except UnsupportedAlgorithm:  # a key type cryptography knows of but cannot use
        raise RsaKeyError(f"{what} uses an algorithm that is not supported", reason="not RSA") from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise RsaKeyError(f"{what} is {describe_key(loaded)}, expected {SIZES_TEXT}", reason="not RSA")
    # load_der_public_key also takes a bare PKCS#1 RSAPublicKey, and tolerates no re-encoding: compare bytes.
    if not is_pem and spki_der(loaded) != data:
        raise RsaKeyError(f"{what} is not a DER SubjectPublicKeyInfo", reason="not SPKI")
    check_rsa_public_key(loaded, what=what)
    return loaded


def describe_key(key: object) -> str:
    """A short name for a key's type ("an EC secp256r1 key"), for messages."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"an EC {key.curve.name} key"
    if isinstance(key, rsa.RSAPublicKey):
        return f"an RSA-{key.key_size} key"
    for kind, label in _KEY_LABELS:
        if isinstance(key, kind):
            return label
    return f"a {type(key).__name__}"
