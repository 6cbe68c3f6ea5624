"""Every place that takes an RSA key applies the same rules (nitrokit._rsa), each with its own typed error.

The CMS envelope code (UnsupportedKeyError), the enclave's EphemeralKeyPair (UsageError) and the simulated
KMS's check of the attestation document's public_key (ValidationException) must refuse and accept the same
keys: a size or exponent rule drifting in one of them makes a row below fail.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nitrokit import _rsa
from nitrokit.cms import SUPPORTED_RSA_BITS, UnsupportedKeyError, encrypt_for_recipient, recipient_key_id
from nitrokit.enclave.keys import RSA_KEY_SIZES, EphemeralKeyPair
from nitrokit.enclave.kms_client import IdentityPolicy
from nitrokit.errors import UsageError
from nitrokit.kms._recipient import recipient_key
from nitrokit.kms.errors import KmsServiceError


@cache
def _private(bits: int, exponent: int = 65537) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=exponent, key_size=bits)


def _spki(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _cms(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(UnsupportedKeyError):
        encrypt_for_recipient(b"x", _spki(key))
    with pytest.raises(UnsupportedKeyError):
        encrypt_for_recipient(b"x", key.public_key())
    with pytest.raises(UnsupportedKeyError):
        recipient_key_id(_spki(key))


def _enclave(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(UsageError):
        EphemeralKeyPair(key)


def _kms(key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KmsServiceError) as info:
        recipient_key(_spki(key))
    assert info.value.code == "ValidationException"


REFUSERS: dict[str, Callable[[rsa.RSAPrivateKey], None]] = {"cms": _cms, "enclave": _enclave, "kms-sim": _kms}


@pytest.mark.parametrize("where", REFUSERS)
@pytest.mark.parametrize(("bits", "exponent"), [(1024, 65537), (2048, 3), (1536, 65537)])
def test_every_place_refuses_the_same_rsa_keys(where: str, bits: int, exponent: int) -> None:
    REFUSERS[where](_private(bits, exponent))


@pytest.mark.parametrize("bits", [2048, 3072])
def test_every_place_accepts_the_allowed_keys(bits: int) -> None:
    key = _private(bits)
    assert encrypt_for_recipient(b"x", _spki(key))
    assert EphemeralKeyPair(key).bits == bits
    assert recipient_key(_spki(key)).key_size == bits


def test_one_list_of_sizes() -> None:
    assert SUPPORTED_RSA_BITS is RSA_KEY_SIZES is _rsa.RSA_KEY_SIZES == (2048, 3072, 4096)
    for bits in (1024, 2047, 8192, True, 2048.0):
        with pytest.raises(UsageError):
            EphemeralKeyPair.generate(bits=bits)  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            IdentityPolicy(key_bits=bits)  # type: ignore[arg-type]


def test_the_spki_form_is_checked_the_same_way_for_der() -> None:
    key = _private(2048)
    pkcs1 = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    for data in (pkcs1, _spki(key) + b"\x00", _spki(ec.generate_private_key(ec.SECP256R1())), b"", b"junk"):
        with pytest.raises(UnsupportedKeyError):
            encrypt_for_recipient(b"x", data)
        with pytest.raises(KmsServiceError):
            recipient_key(data)
    # The one difference, on purpose: the CMS code (and its CLI) also take PEM; a document carries DER only.
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert encrypt_for_recipient(b"x", pem)
    with pytest.raises(KmsServiceError):
        recipient_key(pem)


def test_messages_name_the_size_not_the_key() -> None:
    key = _private(1024)
    with pytest.raises(_rsa.RsaKeyError) as info:
        _rsa.load_rsa_spki(_spki(key), what="key")
    assert "RSA-1024" in str(info.value) and info.value.reason == "RSA-1024"
    assert _spki(key).hex()[:40] not in str(info.value)
