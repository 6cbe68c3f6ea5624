"""Ephemeral RSA key pairs: allowed sizes, DER SPKI public keys, and a private key that stays in memory."""

from __future__ import annotations

import copy
import pickle
import subprocess
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from nitrokit import cms
from nitrokit.attestation import Policy, Verifier
from nitrokit.enclave.keys import EphemeralKeyPair
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.errors import UsageError
from nitrokit.testing import fixture_pki

T0 = datetime(2025, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def pair() -> EphemeralKeyPair:
    return EphemeralKeyPair.generate()


def test_default_is_rsa_2048_with_a_der_spki_public_key(pair: EphemeralKeyPair) -> None:
    assert pair.bits == 2048
    loaded = serialization.load_der_public_key(pair.public_key_der)
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert loaded.public_numbers() == pair.private_key.public_key().public_numbers()
    assert pair.public_key.public_numbers().e == 65537
    assert pair.public_key_der[:1] == b"\x30"  # a DER SEQUENCE, not PEM


def test_openssl_reads_the_public_key(pair: EphemeralKeyPair) -> None:
    result = subprocess.run(["openssl", "pkey", "-pubin", "-inform", "DER", "-noout", "-text"],
                            input=pair.public_key_der, capture_output=True, check=True, timeout=30)
    assert b"Public-Key: (2048 bit)" in result.stdout


@pytest.mark.parametrize("bits", [3072, 4096])
def test_larger_sizes_on_request(bits: int) -> None:
    generated = EphemeralKeyPair.generate(bits=bits)
    assert generated.bits == bits
    assert generated.public_key.key_size == bits


@pytest.mark.parametrize("bits", [1024, 2047, 2049, 8192, 0, -2048, True, 2048.0, "2048", None])
def test_other_sizes_are_refused(bits: object) -> None:
    with pytest.raises(UsageError, match="not allowed"):
        EphemeralKeyPair.generate(bits=bits)  # type: ignore[arg-type]


def test_wrapping_a_wrong_key_is_refused() -> None:
    with pytest.raises(UsageError, match="RSA-1024 is not allowed"):
        EphemeralKeyPair(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with pytest.raises(UsageError, match="expected an RSA private key"):
        EphemeralKeyPair(ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]


def test_pairs_are_fresh(pair: EphemeralKeyPair) -> None:
    assert EphemeralKeyPair.generate().public_key_der != pair.public_key_der


def test_repr_and_str_show_no_key_material(pair: EphemeralKeyPair) -> None:
    numbers = pair.private_key.private_numbers()
    secrets = [numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp]
    for shown in (repr(pair), str(pair), f"{pair!r:>10}"):
        for secret in secrets:
            assert str(secret)[:12] not in shown
            assert f"{secret:x}"[:12] not in shown
        assert "PRIVATE" not in shown
        assert shown.startswith("EphemeralKeyPair(RSA-2048, public key sha256 ")
    assert pair.fingerprint[:16] in repr(pair)


def test_the_pair_cannot_be_pickled_copied_or_inspected_through_a_dict(pair: EphemeralKeyPair) -> None:
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="private key stays in memory"):
            attempt(pair)
    assert not hasattr(pair, "__dict__")


def test_the_private_key_decrypts_what_the_public_key_encrypts(pair: EphemeralKeyPair) -> None:
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    assert pair.private_key.decrypt(pair.public_key.encrypt(b"data key", oaep), oaep) == b"data key"


def test_a_kms_shaped_envelope_to_the_public_key_opens_with_the_private_key(pair: EphemeralKeyPair) -> None:
    envelope = cms.encrypt_for_recipient(b"32 random bytes from KMS........", pair.public_key_der)
    assert cms.decrypt(envelope, pair.private_key) == b"32 random bytes from KMS........"


def test_the_public_key_goes_into_an_attestation_document(pair: EphemeralKeyPair) -> None:
    document = SimulatedNsm(clock=lambda: T0).attestation(public_key=pair.public_key_der)
    result = Verifier(root=fixture_pki().root).verify(document, at=T0,
                                                      policy=Policy(public_key=pair.public_key_der))
    assert result.document.public_key == pair.public_key_der
