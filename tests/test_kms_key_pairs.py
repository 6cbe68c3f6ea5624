"""GenerateDataKeyPair, DeriveSharedSecret and GetPublicKey in the simulated KMS, through plain boto3: with and
without a Recipient, envelopes opened by openssl cms -decrypt, errors as KMS names them."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.cms import decrypt as open_envelope
from nitrokit.kms import DEFAULT_ACCESS_KEY, SimulatedKms
from nitrokit.policy_statements import build_statement
from nitrokit.testing.documents import default_pcrs
from tests.kms_helpers import NO_CLIENT_VALIDATION, error_of, openssl_open
from tests.test_kms_key_policies import ADMIN, ROLE, policy
from tests.test_kms_support import good_document, recipient, rsa_key

CURVES = {"ECC_NIST_P256": ec.SECP256R1(), "ECC_NIST_P384": ec.SECP384R1(), "ECC_NIST_P521": ec.SECP521R1()}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedKms]:
    with SimulatedKms() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def client(sim: SimulatedKms) -> Any:
    return sim.client()


@pytest.fixture(scope="module")
def symmetric(client: Any) -> str:
    key_id: str = client.create_key()["KeyMetadata"]["KeyId"]
    return key_id


def spki_of(private_der: bytes) -> bytes:
    private = serialization.load_der_private_key(private_der, password=None)
    return private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def peer(curve: ec.EllipticCurve) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(curve)
    return key, key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)


# --- GenerateDataKeyPair ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1", "RSA_2048"])
def test_generate_data_key_pair(client: Any, symmetric: str, spec: str) -> None:
    answer = client.generate_data_key_pair(KeyId=symmetric, KeyPairSpec=spec, EncryptionContext={"k": "v"})
    assert (answer["KeyPairSpec"], answer["KeyId"].endswith(symmetric)) == (spec, True)
    assert spki_of(answer["PrivateKeyPlaintext"]) == answer["PublicKey"]
    assert client.decrypt(CiphertextBlob=answer["PrivateKeyCiphertextBlob"],
                          EncryptionContext={"k": "v"})["Plaintext"] == answer["PrivateKeyPlaintext"]
    assert error_of(client.decrypt, CiphertextBlob=answer["PrivateKeyCiphertextBlob"])[0] == \
        "InvalidCiphertextException"


def test_generate_data_key_pair_with_recipient(client: Any, symmetric: str, tmp_path: Path) -> None:
    answer = client.generate_data_key_pair(KeyId=symmetric, KeyPairSpec="ECC_NIST_P384",
                                           Recipient=recipient(good_document()))
    assert "PrivateKeyPlaintext" not in answer
    private_der = openssl_open(answer["CiphertextForRecipient"], tmp_path)
    assert private_der == open_envelope(answer["CiphertextForRecipient"], rsa_key())
    assert spki_of(private_der) == answer["PublicKey"]
    assert client.decrypt(CiphertextBlob=answer["PrivateKeyCiphertextBlob"])["Plaintext"] == private_der


def test_generate_data_key_pair_refusals(client: Any, symmetric: str) -> None:
    ecc = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
    assert error_of(client.generate_data_key_pair, KeyId=symmetric, KeyPairSpec="ML_KEM_512")[0] == \
        "UnsupportedOperationException"
    assert error_of(client.generate_data_key_pair, KeyId=ecc, KeyPairSpec="ECC_NIST_P256")[0] == \
        "InvalidKeyUsageException"
    assert error_of(client.generate_data_key_pair, KeyId=symmetric, KeyPairSpec="RSA_2048", DryRun=True)[0] == \
        "DryRunOperationException"


def test_generate_data_key_pair_validation(sim: SimulatedKms, symmetric: str) -> None:
    raw = sim.client(config=NO_CLIENT_VALIDATION)
    code, message = error_of(raw.generate_data_key_pair, KeyId=symmetric)
    assert (code, message) == ("ValidationException", "1 validation error detected: Value null at 'keyPairSpec' "
                                                      "failed to satisfy constraint: Member must not be null")
    assert error_of(raw.generate_data_key_pair, KeyId=symmetric, KeyPairSpec="RSA_1024")[0] == "ValidationException"


# --- DeriveSharedSecret and GetPublicKey ------------------------------------------------------------------

@pytest.mark.parametrize("spec", sorted(CURVES))
def test_derive_shared_secret(client: Any, spec: str, tmp_path: Path) -> None:
    key_id = client.create_key(KeySpec=spec, KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
    public = client.get_public_key(KeyId=key_id)
    assert (public["KeySpec"], public["KeyUsage"], public["KeyAgreementAlgorithms"]) == (
        spec, "KEY_AGREEMENT", ["ECDH"])
    kms_public = serialization.load_der_public_key(public["PublicKey"])
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    mine, mine_der = peer(CURVES[spec])
    expected = mine.exchange(ec.ECDH(), kms_public)

    answer = client.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=mine_der)
    assert (answer["SharedSecret"], answer["KeyAgreementAlgorithm"], answer["KeyOrigin"]) == (
        expected, "ECDH", "AWS_KMS")
    with_recipient = client.derive_shared_secret(KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=mine_der,
                                                 Recipient=recipient(good_document()))
    assert "SharedSecret" not in with_recipient
    assert openssl_open(with_recipient["CiphertextForRecipient"], tmp_path) == expected


def test_derive_shared_secret_refusals(client: Any, sim: SimulatedKms, symmetric: str) -> None:
    key_id = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]["KeyId"]
    signing = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    _, p256 = peer(ec.SECP256R1())
    _, p384 = peer(ec.SECP384R1())
    for public_key in (p384, b"not a key", rsa_key().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)):
        assert error_of(client.derive_shared_secret, KeyId=key_id, KeyAgreementAlgorithm="ECDH",
                        PublicKey=public_key)[0] == "ValidationException"
    for other in (symmetric, signing):
        assert error_of(client.derive_shared_secret, KeyId=other, KeyAgreementAlgorithm="ECDH",
                        PublicKey=p256)[0] == "InvalidKeyUsageException"
    raw = sim.client(config=NO_CLIENT_VALIDATION)
    assert error_of(raw.derive_shared_secret, KeyId=key_id, PublicKey=p256)[0] == "ValidationException"
    assert error_of(client.get_public_key, KeyId=symmetric)[0] == "UnsupportedOperationException"
    client.disable_key(KeyId=key_id)
    assert error_of(client.derive_shared_secret, KeyId=key_id, KeyAgreementAlgorithm="ECDH",
                    PublicKey=p256)[0] == "DisabledException"


def test_a_pcr0_policy_binds_derive_shared_secret_and_key_pairs(client: Any) -> None:
    actions = ["kms:DeriveSharedSecret", "kms:GenerateDataKeyPair"]
    text = policy({**ADMIN, "NotAction": actions},
                  build_statement(pcrs={0: default_pcrs()[0]}, role_arn=ROLE, actions=actions))
    ecdh = client.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT", Policy=text)["KeyMetadata"]["KeyId"]
    symmetric = client.create_key(Policy=text)["KeyMetadata"]["KeyId"]
    _, p256 = peer(ec.SECP256R1())
    other = recipient(good_document(pcrs={**default_pcrs(), 0: b"\x66" * 48}))
    assert client.derive_shared_secret(KeyId=ecdh, KeyAgreementAlgorithm="ECDH", PublicKey=p256,
                                       Recipient=recipient(good_document()))["CiphertextForRecipient"]
    assert error_of(client.derive_shared_secret, KeyId=ecdh, KeyAgreementAlgorithm="ECDH", PublicKey=p256,
                    Recipient=other)[0] == "AccessDeniedException"
    assert error_of(client.derive_shared_secret, KeyId=ecdh, KeyAgreementAlgorithm="ECDH",
                    PublicKey=p256)[0] == "AccessDeniedException"
    assert error_of(client.generate_data_key_pair, KeyId=symmetric, KeyPairSpec="ECC_NIST_P256",
                    Recipient=other)[0] == "AccessDeniedException"
    assert json.loads(client.get_key_policy(KeyId=symmetric)["Policy"])["Statement"][1]["Action"] == actions


# --- the aws command line against the simulator --------------------------------------------------------------

def test_the_aws_cli_runs_the_key_operations(sim: SimulatedKms, tmp_path: Path) -> None:
    """aws CLI v1 (the one installed here) sends top-level blobs with fileb://; it cannot send a Recipient's
    nested AttestationDocument (shorthand takes fileb:// literally, JSON input is text), so the Recipient forms
    are boto3's tests above."""
    aws = shutil.which("aws")
    if aws is None:
        pytest.skip("the aws command line is not installed")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY.access_key_id,
           "AWS_SECRET_ACCESS_KEY": DEFAULT_ACCESS_KEY.secret_access_key,
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "NO_PROXY": "*"}

    def aws_kms(*args: str) -> dict[str, Any]:
        result = subprocess.run([aws, "--endpoint-url", sim.url, "--output", "json", "kms", *args], env=env,
                                capture_output=True, timeout=60, check=False)
        assert result.returncode == 0, (args, result.stderr[-500:])
        answer: dict[str, Any] = json.loads(result.stdout) if result.stdout.strip() else {}
        return answer

    key_id = aws_kms("create-key", "--description", "aws cli")["KeyMetadata"]["KeyId"]
    aws_kms("create-alias", "--alias-name", "alias/aws-cli", "--target-key-id", key_id)
    data_key = aws_kms("generate-data-key", "--key-id", "alias/aws-cli", "--key-spec", "AES_256",
                       "--encryption-context", "app=cli")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(base64.b64decode(data_key["CiphertextBlob"]))
    opened = aws_kms("decrypt", "--ciphertext-blob", f"fileb://{blob}", "--encryption-context", "app=cli")
    assert opened["Plaintext"] == data_key["Plaintext"] and opened["KeyId"].endswith(key_id)
    pair = aws_kms("generate-data-key-pair", "--key-id", key_id, "--key-pair-spec", "ECC_NIST_P256")
    assert spki_of(base64.b64decode(pair["PrivateKeyPlaintext"])) == base64.b64decode(pair["PublicKey"])
