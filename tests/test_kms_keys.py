"""The simulated KMS's keys through plain boto3 clients: the key store, aliases, states, Encrypt, Decrypt and
GenerateDataKey (with and without a Recipient), each error as KMS names it; envelopes opened by openssl."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nitrokit.cms import decrypt as open_envelope
from nitrokit.cms import parse_enveloped_data, recipient_key_id
from nitrokit.kms import KmsConfigError, KmsSimConfig, SimulatedKey, SimulatedKms, load_config
from tests.kms_helpers import NO_CLIENT_VALIDATION, error_of, openssl_open
from tests.test_kms_support import foreign_pki, good_document, recipient, rsa_key

ARN_PREFIX = "arn:aws:kms:us-east-1:111122223333:"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedKms]:
    with SimulatedKms() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def client(sim: SimulatedKms) -> Any:
    return sim.client()


@pytest.fixture(scope="module")
def raw_client(sim: SimulatedKms) -> Any:
    return sim.client(config=NO_CLIENT_VALIDATION)


@pytest.fixture
def key(client: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = client.create_key(Description="test key")["KeyMetadata"]
    return metadata


# --- the key store ----------------------------------------------------------------------------------------

def test_create_key_metadata(key: dict[str, Any]) -> None:
    assert key["Arn"] == f"{ARN_PREFIX}key/{key['KeyId']}"
    assert (key["KeySpec"], key["KeyUsage"], key["KeyState"], key["Enabled"]) == (
        "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "Enabled", True)
    assert key["EncryptionAlgorithms"] == ["SYMMETRIC_DEFAULT"]
    assert (key["Description"], key["Origin"], key["KeyManager"], key["AWSAccountId"]) == (
        "test key", "AWS_KMS", "CUSTOMER", "111122223333")


def test_a_key_is_addressed_by_id_arn_alias_and_alias_arn(client: Any, key: dict[str, Any]) -> None:
    name = f"alias/app-{key['KeyId'][:8]}"
    client.create_alias(AliasName=name, TargetKeyId=key["Arn"])
    for form in (key["KeyId"], key["Arn"], name, f"{ARN_PREFIX}{name}"):
        assert client.describe_key(KeyId=form)["KeyMetadata"]["KeyId"] == key["KeyId"]
        assert client.encrypt(KeyId=form, Plaintext=b"x")["KeyId"] == key["Arn"]


@pytest.mark.parametrize(("form", "message"), [
    ("00000000-0000-0000-0000-000000000000",
     f"Key '{ARN_PREFIX}key/00000000-0000-0000-0000-000000000000' does not exist"),
    (f"{ARN_PREFIX}key/00000000-0000-0000-0000-000000000000",
     f"Key '{ARN_PREFIX}key/00000000-0000-0000-0000-000000000000' does not exist"),
    ("alias/nothing", f"Alias {ARN_PREFIX}alias/nothing is not found."),
    (f"{ARN_PREFIX}alias/nothing", f"Alias {ARN_PREFIX}alias/nothing is not found."),
    ("not-a-key", "Invalid keyId 'not-a-key'"),
    ("arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000",
     "Invalid arn arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000"),
])
def test_unknown_keys_are_not_found(client: Any, form: str, message: str) -> None:
    assert error_of(client.describe_key, KeyId=form) == ("NotFoundException", message)
    assert error_of(client.encrypt, KeyId=form, Plaintext=b"x")[0] == "NotFoundException"


@pytest.mark.parametrize(("spec", "usage", "member"), [
    ("ECC_NIST_P256", "KEY_AGREEMENT", ("KeyAgreementAlgorithms", ["ECDH"])),
    ("ECC_NIST_P384", "SIGN_VERIFY", ("SigningAlgorithms", ["ECDSA_SHA_384"])),
    ("ECC_NIST_P521", "KEY_AGREEMENT", ("KeyAgreementAlgorithms", ["ECDH"])),
])
def test_ecc_keys(client: Any, spec: str, usage: str, member: tuple[str, list[str]]) -> None:
    metadata = client.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
    assert (metadata["KeySpec"], metadata["KeyUsage"], metadata[member[0]]) == (spec, usage, member[1])
    code, message = error_of(client.encrypt, KeyId=metadata["KeyId"], Plaintext=b"x")
    assert code == "InvalidKeyUsageException"
    assert f"key usage is {usage}" in message
    assert error_of(client.generate_data_key, KeyId=metadata["KeyId"], KeySpec="AES_256")[0] == \
        "InvalidKeyUsageException"


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"KeySpec": "ECC_NIST_P256"}, "ValidationException"),                 # default usage ENCRYPT_DECRYPT
    ({"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "SIGN_VERIFY"}, "ValidationException"),
    ({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}, "UnsupportedOperationException"),
    ({"KeySpec": "SYMMETRIC_DEFAULT", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT"}, "ValidationException"),
    ({"Origin": "EXTERNAL"}, "UnsupportedOperationException"),
    ({"MultiRegion": True}, "UnsupportedOperationException"),
    ({"KeyUsage": "ANYTHING"}, "ValidationException"),
])
def test_create_key_refusals(raw_client: Any, kwargs: dict[str, Any], code: str) -> None:
    assert error_of(raw_client.create_key, **kwargs)[0] == code


def test_aliases(client: Any, raw_client: Any, key: dict[str, Any]) -> None:
    other = client.create_key()["KeyMetadata"]
    stem = f"alias/list-{key['KeyId'][:8]}"
    names = [f"{stem}-{i}" for i in range(5)]
    for name in names:
        client.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    client.create_alias(AliasName=f"{stem}-other", TargetKeyId=other["KeyId"])
    assert error_of(client.create_alias, AliasName=names[0], TargetKeyId=other["KeyId"]) == (
        "AlreadyExistsException", f"An alias with the name {ARN_PREFIX}{names[0]} already exists")
    assert error_of(client.create_alias, AliasName="alias/aws/mine", TargetKeyId=key["KeyId"])[0] == \
        "NotAuthorizedException"
    assert error_of(client.create_alias, AliasName="no-prefix", TargetKeyId=key["KeyId"])[0] == "ValidationException"
    assert error_of(client.create_alias, AliasName=f"{stem}-x", TargetKeyId=names[0])[0] == "ValidationException"
    assert error_of(raw_client.create_alias, AliasName="alias/sp ace", TargetKeyId=key["KeyId"])[0] == \
        "ValidationException"

    seen: list[dict[str, Any]] = []
    marker: dict[str, Any] = {}
    while True:
        page = client.list_aliases(KeyId=key["Arn"], Limit=2, **marker)
        seen += page["Aliases"]
        assert len(page["Aliases"]) <= 2
        if not page["Truncated"]:
            break
        marker = {"Marker": page["NextMarker"]}
    assert [entry["AliasName"] for entry in seen] == names
    assert {entry["TargetKeyId"] for entry in seen} == {key["KeyId"]}
    assert seen[0]["AliasArn"] == f"{ARN_PREFIX}{names[0]}"
    everything = [entry["AliasName"] for entry in client.list_aliases(Limit=100)["Aliases"]]
    assert set(names) | {f"{stem}-other"} <= set(everything)
    assert error_of(client.list_aliases, Marker="nonsense")[0] == "InvalidMarkerException"


def test_disable_enable_and_deletion(client: Any, key: dict[str, Any]) -> None:
    blob = client.encrypt(KeyId=key["KeyId"], Plaintext=b"secret")["CiphertextBlob"]
    client.disable_key(KeyId=key["KeyId"])
    assert client.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    disabled = ("DisabledException", f"{key['Arn']} is disabled.")
    assert error_of(client.encrypt, KeyId=key["KeyId"], Plaintext=b"x") == disabled
    assert error_of(client.decrypt, CiphertextBlob=blob) == disabled
    assert error_of(client.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256") == disabled
    client.enable_key(KeyId=key["KeyId"])
    assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"secret"

    assert error_of(client.schedule_key_deletion, KeyId=key["KeyId"], PendingWindowInDays=6)[0] == \
        "ValidationException"
    scheduled = client.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    assert (scheduled["KeyId"], scheduled["KeyState"], scheduled["PendingWindowInDays"]) == (
        key["Arn"], "PendingDeletion", 7)
    metadata = client.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (metadata["KeyState"], metadata["Enabled"]) == ("PendingDeletion", False)
    assert metadata["DeletionDate"] == scheduled["DeletionDate"]
    pending = ("KMSInvalidStateException", f"{key['Arn']} is pending deletion.")
    assert error_of(client.encrypt, KeyId=key["KeyId"], Plaintext=b"x") == pending
    assert error_of(client.decrypt, CiphertextBlob=blob) == pending
    assert error_of(client.enable_key, KeyId=key["KeyId"]) == pending
    assert error_of(client.schedule_key_deletion, KeyId=key["KeyId"]) == pending
    assert error_of(client.create_alias, AliasName=f"alias/late-{key['KeyId'][:8]}",
                    TargetKeyId=key["KeyId"]) == pending
    assert client.cancel_key_deletion(KeyId=key["KeyId"])["KeyId"] == key["Arn"]
    assert client.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    assert error_of(client.cancel_key_deletion, KeyId=key["KeyId"])[0] == "KMSInvalidStateException"


# --- Encrypt and Decrypt ----------------------------------------------------------------------------------

def test_encrypt_decrypt_round_trip_bound_to_the_context(client: Any, key: dict[str, Any]) -> None:
    context = {"purpose": "test", "tenant": "42"}
    encrypted = client.encrypt(KeyId=key["KeyId"], Plaintext=b"p" * 4096, EncryptionContext=context)
    assert (encrypted["KeyId"], encrypted["EncryptionAlgorithm"]) == (key["Arn"], "SYMMETRIC_DEFAULT")
    blob = encrypted["CiphertextBlob"]
    assert len(blob) <= 6144
    decrypted = client.decrypt(CiphertextBlob=blob, EncryptionContext=dict(reversed(context.items())))
    assert (decrypted["Plaintext"], decrypted["KeyId"], decrypted["EncryptionAlgorithm"]) == (
        b"p" * 4096, key["Arn"], "SYMMETRIC_DEFAULT")
    assert client.decrypt(CiphertextBlob=blob, KeyId=key["KeyId"], EncryptionContext=context)["Plaintext"]
    for wrong in ({}, {"purpose": "test"}, {**context, "tenant": "43"}, {**context, "extra": ""}):
        assert error_of(client.decrypt, CiphertextBlob=blob, EncryptionContext=wrong)[0] == \
            "InvalidCiphertextException"


def test_the_context_encoding_is_unambiguous(client: Any, key: dict[str, Any]) -> None:
    blob = client.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"ab": "c"})["CiphertextBlob"]
    assert error_of(client.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "bc"})[0] == \
        "InvalidCiphertextException"


def test_decrypt_refuses_another_key_and_damaged_blobs(client: Any, key: dict[str, Any]) -> None:
    other = client.create_key()["KeyMetadata"]
    blob = client.encrypt(KeyId=key["KeyId"], Plaintext=b"secret")["CiphertextBlob"]
    assert error_of(client.decrypt, CiphertextBlob=blob, KeyId=other["KeyId"]) == (
        "IncorrectKeyException", "The key ID in the request does not identify a CMK that can perform this operation.")
    for damaged in (blob[:-1] + bytes([blob[-1] ^ 1]), blob[:30], b"\x00" * 64, bytes([blob[0]]) + b"\xff" * 16
                    + blob[17:]):
        assert error_of(client.decrypt, CiphertextBlob=damaged)[0] == "InvalidCiphertextException"
    # The key id in the header moved to another key: that key's material does not open it.
    moved = blob[:1] + bytes.fromhex(other["KeyId"].replace("-", "")) + blob[17:]
    assert error_of(client.decrypt, CiphertextBlob=moved)[0] == "InvalidCiphertextException"


def test_encrypt_validation_and_algorithms(client: Any, raw_client: Any, key: dict[str, Any]) -> None:
    code, message = error_of(raw_client.encrypt, KeyId=key["KeyId"], Plaintext=b"p" * 4097)
    assert (code, message) == ("ValidationException", "1 validation error detected: Value at 'plaintext' failed to "
                                                      "satisfy constraint: Member must have length less than or "
                                                      "equal to 4096")
    code, message = error_of(raw_client.encrypt, Plaintext=b"x")
    assert "Value null at 'keyId' failed to satisfy constraint: Member must not be null" in message
    assert error_of(raw_client.encrypt, KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"a": 1})[0] == \
        "SerializationException"
    assert error_of(raw_client.encrypt, KeyId=key["KeyId"], Plaintext=b"x", GrantTokens=["t"] * 11)[0] == \
        "ValidationException"
    assert error_of(raw_client.encrypt, KeyId=key["KeyId"], Plaintext=b"x",
                    EncryptionContext={"k": "v" * 8192})[0] == "ValidationException"
    assert error_of(client.encrypt, KeyId=key["KeyId"], Plaintext=b"x",
                    EncryptionAlgorithm="RSAES_OAEP_SHA_256")[0] == "InvalidKeyUsageException"
    assert error_of(client.encrypt, KeyId=key["KeyId"], Plaintext=b"x", DryRun=True) == (
        "DryRunOperationException", "The request would have succeeded, but the DryRun option is set.")


def test_decrypt_with_recipient(client: Any, key: dict[str, Any], tmp_path: Path) -> None:
    blob = client.encrypt(KeyId=key["KeyId"], Plaintext=b"enclave secret", EncryptionContext={"a": "b"})[
        "CiphertextBlob"]
    answer = client.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"}, Recipient=recipient(good_document()))
    assert "Plaintext" not in answer
    assert (answer["KeyId"], answer["EncryptionAlgorithm"]) == (key["Arn"], "SYMMETRIC_DEFAULT")
    envelope = answer["CiphertextForRecipient"]
    assert parse_enveloped_data(envelope).rid == recipient_key_id(rsa_key().public_key())
    assert open_envelope(envelope, rsa_key()) == b"enclave secret"
    assert openssl_open(envelope, tmp_path) == b"enclave secret"
    # The context still binds, and the document is checked as GenerateRandom checks it.
    assert error_of(client.decrypt, CiphertextBlob=blob, Recipient=recipient(good_document()))[0] == \
        "InvalidCiphertextException"
    code, message = error_of(client.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "b"},
                             Recipient=recipient(good_document(pki=foreign_pki())))
    assert code == "ValidationException"
    assert message.startswith("Invalid attestation document in Recipient")


# --- GenerateDataKey --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "size"), [({"KeySpec": "AES_256"}, 32), ({"KeySpec": "AES_128"}, 16),
                                              ({"NumberOfBytes": 1}, 1), ({"NumberOfBytes": 1024}, 1024)])
def test_generate_data_key(client: Any, key: dict[str, Any], kwargs: dict[str, Any], size: int) -> None:
    answer = client.generate_data_key(KeyId=key["KeyId"], EncryptionContext={"k": "v"}, **kwargs)
    assert len(answer["Plaintext"]) == size
    assert answer["KeyId"] == key["Arn"]
    assert client.decrypt(CiphertextBlob=answer["CiphertextBlob"], EncryptionContext={"k": "v"})["Plaintext"] == \
        answer["Plaintext"]


@pytest.mark.parametrize("kwargs", [{}, {"KeySpec": "AES_256", "NumberOfBytes": 32}])
def test_generate_data_key_needs_exactly_one_size(client: Any, key: dict[str, Any], kwargs: dict[str, Any]) -> None:
    assert error_of(client.generate_data_key, KeyId=key["KeyId"], **kwargs) == (
        "ValidationException", "Please specify either number of bytes or key spec.")


@pytest.mark.parametrize("kwargs", [{"NumberOfBytes": 0}, {"NumberOfBytes": 1025}, {"KeySpec": "AES_512"}])
def test_generate_data_key_validation(raw_client: Any, key: dict[str, Any], kwargs: dict[str, Any]) -> None:
    assert error_of(raw_client.generate_data_key, KeyId=key["KeyId"], **kwargs)[0] == "ValidationException"


def test_generate_data_key_with_recipient(client: Any, key: dict[str, Any], tmp_path: Path) -> None:
    answer = client.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", Recipient=recipient(good_document()))
    assert "Plaintext" not in answer
    assert answer["KeyId"] == key["Arn"]
    data_key = openssl_open(answer["CiphertextForRecipient"], tmp_path)
    assert len(data_key) == 32
    assert data_key == open_envelope(answer["CiphertextForRecipient"], rsa_key())
    assert client.decrypt(CiphertextBlob=answer["CiphertextBlob"])["Plaintext"] == data_key
    assert error_of(client.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256", DryRun=True)[0] == \
        "DryRunOperationException"


def test_recipient_required_covers_decrypt_and_generate_data_key() -> None:
    with SimulatedKms(KmsSimConfig(recipient_required=True)) as simulator:
        client = simulator.client()
        key_id = client.create_key()["KeyMetadata"]["KeyId"]
        blob = client.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
        code, message = error_of(client.decrypt, CiphertextBlob=blob)
        assert code == "AccessDeniedException"
        assert f"kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/{key_id}" in message
        assert error_of(client.generate_data_key, KeyId=key_id, KeySpec="AES_256")[0] == "AccessDeniedException"
        assert client.decrypt(CiphertextBlob=blob, Recipient=recipient(good_document()))["CiphertextForRecipient"]


# --- keys from the configuration ---------------------------------------------------------------------------

FIXED_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
CONFIG_TOML = f'''
[[keys]]
key_id = "{FIXED_ID}"
material = "{"42" * 32}"
aliases = ["alias/app", "alias/app-2"]
description = "from the file"

[[keys]]
key_id = "00000000-0000-4000-8000-000000000001"
key_spec = "ECC_NIST_P256"
key_usage = "KEY_AGREEMENT"
enabled = false

[[keys]]
key_id = "00000000-0000-4000-8000-000000000002"
policy = \'\'\'{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Principal": "*",
  "NotAction": "kms:Decrypt", "Resource": "*"}}]}}\'\'\'
'''


def test_configured_keys_make_ciphertexts_reproducible(tmp_path: Path) -> None:
    path = tmp_path / "kms.toml"
    path.write_text(CONFIG_TOML)
    config = load_config(path)
    with SimulatedKms(config) as first:
        client = first.client()
        blob = client.encrypt(KeyId="alias/app", Plaintext=b"kept", EncryptionContext={"a": "b"})["CiphertextBlob"]
        metadata = client.describe_key(KeyId="alias/app-2")["KeyMetadata"]
        assert (metadata["KeyId"], metadata["Description"]) == (FIXED_ID, "from the file")
        ecc = client.describe_key(KeyId="00000000-0000-4000-8000-000000000001")["KeyMetadata"]
        assert (ecc["KeySpec"], ecc["KeyUsage"], ecc["KeyState"]) == ("ECC_NIST_P256", "KEY_AGREEMENT", "Disabled")
        other = "00000000-0000-4000-8000-000000000002"
        other_blob = client.encrypt(KeyId=other, Plaintext=b"x")["CiphertextBlob"]
        assert error_of(client.decrypt, CiphertextBlob=other_blob)[0] == "AccessDeniedException"
    with SimulatedKms(load_config(path)) as second:  # another process or run: the same key
        assert second.client().decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"kept"


@pytest.mark.parametrize("entry", [
    {"key_id": "not-a-uuid"},
    {"key_id": FIXED_ID.upper()},
    {"key_id": FIXED_ID, "material": "42" * 31},
    {"key_id": FIXED_ID, "material": "zz" * 32},
    {"key_id": FIXED_ID, "key_spec": "ECC_NIST_P256", "key_usage": "KEY_AGREEMENT", "material": "42" * 32},
    {"key_id": FIXED_ID, "key_spec": "ECC_NIST_P256"},
    {"key_id": FIXED_ID, "key_spec": "RSA_2048"},
    {"key_id": FIXED_ID, "aliases": ["app"]},
    {"key_id": FIXED_ID, "aliases": ["alias/aws/app"]},
    {"key_id": FIXED_ID, "aliases": ["alias/sp ace"]},
    {"key_id": FIXED_ID, "policy": "not json"},
    {"key_id": FIXED_ID, "policy": {"Statement": [{"Effect": "Allow", "Action": "kms:*"}]}},
    {"key_id": FIXED_ID, "enabled": "yes"},
    {"key_id": FIXED_ID, "unknown": 1},
])
def test_invalid_configured_keys_are_refused(entry: dict[str, Any]) -> None:
    with pytest.raises(KmsConfigError):
        KmsSimConfig.from_mapping({"keys": [entry]})


def test_configured_key_ids_and_aliases_are_unique() -> None:
    with pytest.raises(KmsConfigError, match="unique"):
        KmsSimConfig(keys=(SimulatedKey(key_id=FIXED_ID), SimulatedKey(key_id=FIXED_ID)))
    with pytest.raises(KmsConfigError, match="alias"):
        KmsSimConfig(keys=(SimulatedKey(key_id=FIXED_ID, aliases=("alias/a",)),
                           SimulatedKey(key_id="00000000-0000-4000-8000-000000000001", aliases=("alias/a",))))


# --- the state directory ------------------------------------------------------------------------------------

def test_state_dir_keeps_keys_aliases_states_and_policies(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = KmsSimConfig(state_dir=state, keys=(SimulatedKey(key_id=FIXED_ID, aliases=("alias/seed",)),))
    with SimulatedKms(config) as first:
        client = first.client()
        key_id = client.create_key(Description="made in run 1")["KeyMetadata"]["KeyId"]
        ecc = client.create_key(KeySpec="ECC_NIST_P384", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        client.create_alias(AliasName="alias/run1", TargetKeyId=key_id)
        blob = client.encrypt(KeyId="alias/run1", Plaintext=b"persisted")["CiphertextBlob"]
        seeded = client.encrypt(KeyId="alias/seed", Plaintext=b"seeded")["CiphertextBlob"]
        client.disable_key(KeyId=ecc)
    assert (state.stat().st_mode & 0o777, (state / "kms-sim-state.json").stat().st_mode & 0o777) == (0o700, 0o600)
    with SimulatedKms(config) as second:
        client = second.client()
        assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"persisted"
        assert client.decrypt(CiphertextBlob=seeded)["Plaintext"] == b"seeded"
        assert client.describe_key(KeyId="alias/run1")["KeyMetadata"]["Description"] == "made in run 1"
        assert client.describe_key(KeyId=ecc)["KeyMetadata"]["KeyState"] == "Disabled"
        assert {entry["AliasName"] for entry in client.list_aliases()["Aliases"]} == {"alias/seed", "alias/run1"}


@pytest.mark.parametrize("content", ["not json", '{"format": "other"}',
                                     '{"format": "nitrokit-kms-sim-state/1", "region": "us-east-1", '
                                     '"account": "111122223333", "keys": [{"key_id": "x"}], "aliases": []}'])
def test_a_state_file_it_did_not_write_is_refused_at_start(tmp_path: Path, content: str) -> None:
    (tmp_path / "kms-sim-state.json").write_text(content)
    with pytest.raises(KmsConfigError, match="state_dir"):
        SimulatedKms(KmsSimConfig(state_dir=tmp_path))


def test_kms_sim_command_state_dir(tmp_path: Path) -> None:
    from nitrokit.cli import build_parser
    from nitrokit.cli import kms_sim as kms_sim_cli

    args = build_parser().parse_args(["kms-sim", "--state-dir", str(tmp_path / "s")])
    assert kms_sim_cli.build_config(args).state_dir == tmp_path / "s"
