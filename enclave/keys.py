"""Ephemeral RSA key pairs for KMS recipients.

An enclave puts the public key (DER SubjectPublicKeyInfo) into its attestation document's ``public_key``; KMS
encrypts its answer to that key (CiphertextForRecipient), and only the enclave can decrypt it::

    pair = EphemeralKeyPair.generate()                        # RSA-2048; bits=3072 or 4096 on request
    document = nsm.attestation(public_key=pair.public_key_der)
    plaintext = nitrokit.cms.decrypt(ciphertext_for_recipient, pair.private_key)

The private key lives only in this process's memory: it is never serialised, written, logged or shown by
repr(), and the pair refuses to be pickled or copied. Keep one pair per request and drop it afterwards.
"""

from __future__ import annotations

import hashlib
from typing import NoReturn

from cryptography.hazmat.primitives.asymmetric import rsa

from nitrokit._rsa import DEFAULT_RSA_KEY_SIZE, PUBLIC_EXPONENT, RSA_KEY_SIZES, RsaKeyError, check_rsa_bits, spki_der
from nitrokit._rsa import check_rsa_public_key as _check_public_key
from nitrokit.errors import UsageError

__all__ = ["DEFAULT_RSA_KEY_SIZE", "PUBLIC_EXPONENT", "RSA_KEY_SIZES", "EphemeralKeyPair", "check_key_bits"]


def check_key_bits(bits: object) -> int:
    """``bits`` if it is a key size an ephemeral pair may have (:data:`RSA_KEY_SIZES`); else :class:`UsageError`."""
    try:
        return check_rsa_bits(bits, what="ephemeral key pair")
    except RsaKeyError as exc:
        raise UsageError(str(exc)) from None


class EphemeralKeyPair:
    """An RSA key pair generated in memory for one KMS exchange."""

    __slots__ = ("_private_key", "_public_key_der")

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        """Wrap an existing key (prefer :meth:`generate`); its size must be one of :data:`RSA_KEY_SIZES`."""
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise UsageError(f"expected an RSA private key, got {type(private_key).__name__}")
        try:
            # The same rules KMS and the CMS code apply to the public half (size, exponent).
            _check_public_key(private_key.public_key(), what="ephemeral key pair")
        except RsaKeyError as exc:
            raise UsageError(str(exc)) from None
        self._private_key = private_key
        self._public_key_der = spki_der(private_key.public_key())

    @classmethod
    def generate(cls, *, bits: int = DEFAULT_RSA_KEY_SIZE) -> EphemeralKeyPair:
        """A fresh key pair of ``bits`` (2048 by default, 3072 or 4096 on request; anything else is refused)."""
        return cls(rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=check_key_bits(bits)))

    @property
    def bits(self) -> int:
        return self._private_key.key_size

    @property
    def public_key_der(self) -> bytes:
        """The public key as DER SubjectPublicKeyInfo: what goes into the attestation document."""
        return self._public_key_der

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._private_key.public_key()

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        """The private key, for decrypting (e.g. ``nitrokit.cms.decrypt``). Never log, serialise or store it."""
        return self._private_key

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the public key DER, in hex: a safe name for this pair in logs."""
        return hashlib.sha256(self._public_key_der).hexdigest()

    def __repr__(self) -> str:
        return f"EphemeralKeyPair(RSA-{self.bits}, public key sha256 {self.fingerprint[:16]}...)"

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        # pickle and copy both go through here: the private key must not leave this object.
        raise TypeError("an EphemeralKeyPair cannot be pickled or copied: its private key stays in memory")

