"""GenerateRandom through plain boto3 clients: answers, envelopes, validation, key stores, attestation policies."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nitrokit.cms import decrypt, parse_enveloped_data, recipient_key_id
from nitrokit.kms import AttestationConditions, CustomKeyStore, KmsSimConfig, SimulatedKms
from nitrokit.testing.documents import default_pcrs
from tests.kms_helpers import NO_CLIENT_VALIDATION, client_error
from tests.test_kms_support import foreign_pki, good_document, recipient, rsa_key, spki


def error_of(call: Any, **kwargs: Any) -> tuple[str, int, str]:
    """(code, HTTP status, message) of the ClientError botocore raises for ``call(**kwargs)``."""
    response = client_error(call, **kwargs).response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedKms]:
    stores = (
        CustomKeyStore(id="cks-1111111111111111a", type="AWS_CLOUDHSM", connection_state="CONNECTED"),
        CustomKeyStore(id="cks-2222222222222222b", type="AWS_CLOUDHSM", connection_state="DISCONNECTED"),
        CustomKeyStore(id="cks-3333333333333333c", type="EXTERNAL_KEY_STORE", connection_state="CONNECTED"),
    )
    with SimulatedKms(KmsSimConfig(custom_key_stores=stores)) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def client(sim: SimulatedKms) -> Any:
    return sim.client()


@pytest.fixture(scope="module")
def raw_client(sim: SimulatedKms) -> Any:
    """A client that sends what it is given (botocore's own checks off), to reach the server's validation."""
    return sim.client(config=NO_CLIENT_VALIDATION)


# --- success -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 32, 1024])
def test_plaintext(client: Any, count: int) -> None:
    response = client.generate_random(NumberOfBytes=count)
    assert len(response["Plaintext"]) == count
    assert "CiphertextForRecipient" not in response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ResponseMetadata"]["RequestId"]


def test_plaintext_differs_between_calls(client: Any) -> None:
    first, second = (client.generate_random(NumberOfBytes=32)["Plaintext"] for _ in range(2))
    assert first != second


@pytest.mark.parametrize("count", [1, 32, 1024])
def test_recipient_gets_only_an_envelope_our_cms_opens(client: Any, count: int) -> None:
    response = client.generate_random(NumberOfBytes=count, Recipient=recipient(good_document()))
    assert "Plaintext" not in response
    envelope = response["CiphertextForRecipient"]
    assert 1 <= len(envelope) <= 6144
    assert parse_enveloped_data(envelope).rid == recipient_key_id(rsa_key().public_key())
    assert len(decrypt(envelope, rsa_key())) == count


def test_envelope_opens_with_openssl(client: Any, tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not installed")
    envelope = client.generate_random(NumberOfBytes=64, Recipient=recipient(good_document()))["CiphertextForRecipient"]
    key_path, in_path, out_path = tmp_path / "key.pem", tmp_path / "ct.ber", tmp_path / "out.bin"
    key_path.write_bytes(rsa_key().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    in_path.write_bytes(envelope)
    subprocess.run([openssl, "cms", "-decrypt", "-inform", "DER", "-in", str(in_path), "-inkey", str(key_path),
                    "-binary", "-out", str(out_path)], check=True, capture_output=True, timeout=30)
    opened = out_path.read_bytes()
    assert len(opened) == 64
    assert opened == decrypt(envelope, rsa_key())


@pytest.mark.parametrize("bits", [3072, 4096])
def test_larger_rsa_recipients(client: Any, bits: int) -> None:
    key = rsa_key(bits)
    envelope = client.generate_random(NumberOfBytes=1024, Recipient=recipient(good_document(public_key=spki(key))))[
        "CiphertextForRecipient"]
    assert len(envelope) <= 6144
    assert len(decrypt(envelope, key)) == 1024


def test_tagged_document_accepted(client: Any) -> None:
    response = client.generate_random(NumberOfBytes=8, Recipient=recipient(good_document(tagged=True)))
    assert len(decrypt(response["CiphertextForRecipient"], rsa_key())) == 8


# --- validation (ValidationException / SerializationException, HTTP 400) ----------------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"NumberOfBytes": 0}, "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy "
                           "constraint: Member must have value greater than or equal to 1"),
    ({"NumberOfBytes": -5}, "1 validation error detected: Value '-5' at 'numberOfBytes' failed to satisfy "
                            "constraint: Member must have value greater than or equal to 1"),
    ({"NumberOfBytes": 1025}, "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy "
                              "constraint: Member must have value less than or equal to 1024"),
    ({}, "1 validation error detected: Value null at 'numberOfBytes' failed to satisfy constraint: "
         "Member must not be null"),
    ({"NumberOfBytes": 8, "CustomKeyStoreId": ""}, "1 validation error detected: Value '' at 'customKeyStoreId' "
                                                  "failed to satisfy constraint: Member must have length greater "
                                                  "than or equal to 1"),
    ({"NumberOfBytes": 8, "CustomKeyStoreId": "c" * 65},
     f"1 validation error detected: Value '{'c' * 65}' at 'customKeyStoreId' failed to satisfy constraint: Member "
     "must have length less than or equal to 64"),
    ({"NumberOfBytes": 0, "CustomKeyStoreId": ""},
     "2 validation errors detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have "
     "value greater than or equal to 1; Value '' at 'customKeyStoreId' failed to satisfy constraint: Member must "
     "have length greater than or equal to 1"),
    ({"NumberOfBytes": 8, "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
     "1 validation error detected: Value null at 'recipient.attestationDocument' failed to satisfy constraint: "
     "Member must not be null"),
    ({"NumberOfBytes": 8, "Recipient": {"AttestationDocument": b"x"}},
     "1 validation error detected: Value null at 'recipient.keyEncryptionAlgorithm' failed to satisfy "
     "constraint: Member must not be null"),
    ({"NumberOfBytes": 8, "Recipient": {"AttestationDocument": b"x", "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_1"}},
     "1 validation error detected: Value 'RSAES_OAEP_SHA_1' at 'recipient.keyEncryptionAlgorithm' failed to "
     "satisfy constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_256]"),
    ({"NumberOfBytes": 8, "Recipient": {"AttestationDocument": b"", "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
     "1 validation error detected: Value at 'recipient.attestationDocument' failed to satisfy constraint: Member "
     "must have length greater than or equal to 1"),
    ({"NumberOfBytes": 8, "Recipient": {"AttestationDocument": b"\0" * 262145,
                                        "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}},
     "1 validation error detected: Value at 'recipient.attestationDocument' failed to satisfy constraint: Member "
     "must have length less than or equal to 262144"),
], ids=["zero", "negative", "too-many", "missing", "empty-store", "long-store", "two-errors", "no-document",
        "no-algorithm", "other-algorithm", "empty-document", "huge-document"])
def test_validation_errors(raw_client: Any, kwargs: dict[str, Any], message: str) -> None:
    assert error_of(raw_client.generate_random, **kwargs) == ("ValidationException", 400, message)


@pytest.mark.parametrize("kwargs", [
    {"NumberOfBytes": "32"},
    {"NumberOfBytes": True},
    {"NumberOfBytes": 8, "CustomKeyStoreId": 5},
], ids=["string-count", "bool-count", "int-store"])
def test_wrong_json_types_are_serialization_errors(raw_client: Any, kwargs: dict[str, Any]) -> None:
    code, status, _ = error_of(raw_client.generate_random, **kwargs)
    assert (code, status) == ("SerializationException", 400)


def test_botocore_itself_refuses_out_of_range_values(client: Any) -> None:
    """With botocore's checks on, the same bad input never reaches the wire (so the server tests use them off)."""
    from botocore.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError):
        client.generate_random(NumberOfBytes=0)


# --- custom key stores -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("store", "expected"), [
    ("cks-1111111111111111a", None),
    ("cks-2222222222222222b", ("CustomKeyStoreInvalidStateException", 400)),
    ("cks-3333333333333333c", ("UnsupportedOperationException", 400)),
    ("cks-9999999999999999z", ("CustomKeyStoreNotFoundException", 400)),
], ids=["connected", "disconnected", "external", "unknown"])
def test_custom_key_stores(client: Any, store: str, expected: tuple[str, int] | None) -> None:
    if expected is None:
        assert len(client.generate_random(NumberOfBytes=16, CustomKeyStoreId=store)["Plaintext"]) == 16
        response = client.generate_random(NumberOfBytes=16, CustomKeyStoreId=store,
                                          Recipient=recipient(good_document()))
        assert len(decrypt(response["CiphertextForRecipient"], rsa_key())) == 16
    else:
        assert error_of(client.generate_random, NumberOfBytes=16, CustomKeyStoreId=store)[:2] == expected


# --- recipient public keys ---------------------------------------------------------------------------------

def _pkcs1() -> bytes:
    return rsa_key().public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


@pytest.mark.parametrize("public_key", [
    pytest.param(lambda: None, id="absent"),
    pytest.param(lambda: spki(ec.generate_private_key(ec.SECP256R1())), id="ec-p256"),
    pytest.param(lambda: b"\x04" + b"\x11" * 64, id="raw-65-bytes"),
    pytest.param(lambda: bytes(32), id="32-bytes"),
    pytest.param(_pkcs1, id="rsa-pkcs1-not-spki"),
    pytest.param(lambda: spki(rsa.generate_private_key(public_exponent=65537, key_size=1024)), id="rsa-1024"),
    pytest.param(lambda: spki(rsa_key()) + b"\0", id="spki-trailing-byte"),
])
def test_recipient_key_must_be_rsa_spki(client: Any, public_key: Any) -> None:
    document = good_document(public_key=public_key())
    code, status, message = error_of(client.generate_random, NumberOfBytes=8, Recipient=recipient(document))
    assert (code, status) == ("ValidationException", 400)
    assert "public_key" in message


# --- attestation documents under each policy ---------------------------------------------------------------

PCR0 = default_pcrs()[0]
DEBUG_PCRS = {index: bytes(48) for index in range(16)}


def _documents() -> dict[str, bytes | None]:
    good = good_document()
    # PCR0 rewritten after signing (what a hostile parent would like to do): the signature no longer matches.
    assert good.count(PCR0) == 1
    tampered = good.replace(PCR0, bytes([0xEE]) * 48)
    return {
        "none": None,
        "good": good,
        "debug": good_document(pcrs=DEBUG_PCRS),
        "foreign-root": good_document(pki=foreign_pki()),
        "expired": good_document(at=datetime.now(UTC) - timedelta(days=3)),
        "future": good_document(at=datetime.now(UTC) + timedelta(hours=1)),
        "tampered": tampered,
        "garbage": b"\xa0not an attestation document",
        "oversized": good + bytes(100_000),  # legal for the API (<= 262144 bytes), too big for a document
    }


POLICIES: dict[str, dict[str, Any]] = {
    "no-conditions": {},
    "pcr0": {"conditions": AttestationConditions.require(pcrs={0: PCR0.hex().upper()})},
    "image-sha384": {"conditions": AttestationConditions.require(image_sha384=PCR0)},
    "recipient-required": {"recipient_required": True},
}

OK, INVALID, DENIED = "ok", ("ValidationException", 400), ("AccessDeniedException", 400)
EXPECTED: dict[str, dict[str, Any]] = {
    # Documents KMS can not use are ValidationException under every policy; policy failures AccessDenied.
    "none": {"no-conditions": OK, "pcr0": DENIED, "image-sha384": DENIED, "recipient-required": DENIED},
    "good": dict.fromkeys(POLICIES, OK),
    "debug": {"no-conditions": OK, "pcr0": DENIED, "image-sha384": DENIED, "recipient-required": OK},
    **{name: dict.fromkeys(POLICIES, INVALID)
       for name in ("foreign-root", "expired", "future", "tampered", "garbage", "oversized")},
}


@pytest.fixture(scope="module")
def documents() -> dict[str, bytes | None]:
    return _documents()


@pytest.fixture(scope="module")
def policy_sims() -> Iterator[dict[str, SimulatedKms]]:
    sims = {name: SimulatedKms(KmsSimConfig(**settings)).start() for name, settings in POLICIES.items()}
    try:
        yield sims
    finally:
        for simulator in sims.values():
            simulator.stop()


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("document_name", list(EXPECTED))
def test_documents_under_policies(policy_sims: dict[str, SimulatedKms], documents: dict[str, bytes | None],
                                  policy: str, document_name: str) -> None:
    client = policy_sims[policy].client()
    document = documents[document_name]
    kwargs: dict[str, Any] = {"NumberOfBytes": 16}
    if document is not None:
        kwargs["Recipient"] = recipient(document)
    expected = EXPECTED[document_name][policy]
    if expected == OK:
        response = client.generate_random(**kwargs)
        if document is None:
            assert len(response["Plaintext"]) == 16
        else:
            assert "Plaintext" not in response
            assert len(decrypt(response["CiphertextForRecipient"], rsa_key())) == 16
    else:
        code, status, message = error_of(client.generate_random, **kwargs)
        assert (code, status) == expected
        if code == "AccessDeniedException":
            assert "is not authorized to perform: kms:GenerateRandom" in message


def test_invalid_document_message_names_the_step(client: Any, documents: dict[str, bytes | None]) -> None:
    messages = {name: error_of(client.generate_random, NumberOfBytes=8, Recipient=recipient(documents[name]))[2]
                for name in ("foreign-root", "expired", "tampered")}
    assert "chain" in messages["foreign-root"]
    assert "expired" in messages["expired"]
    assert "signature" in messages["tampered"]


def test_conditions_for_other_pcr_values_deny(documents: dict[str, bytes | None]) -> None:
    conditions = AttestationConditions.require(pcrs={0: PCR0, 8: bytes([0xAB]) * 48})
    with SimulatedKms(KmsSimConfig(conditions=conditions)) as simulator:
        code, status, _ = error_of(simulator.client().generate_random, NumberOfBytes=8,
                                   Recipient=recipient(documents["good"]))
        assert (code, status) == DENIED


def test_runtime_condition_changes(documents: dict[str, bytes | None]) -> None:
    with SimulatedKms() as simulator:
        client = simulator.client()
        client.generate_random(NumberOfBytes=8)
        simulator.set_conditions(None, recipient_required=True)
        assert error_of(client.generate_random, NumberOfBytes=8)[:2] == DENIED
        client.generate_random(NumberOfBytes=8, Recipient=recipient(documents["good"]))
        simulator.set_conditions(AttestationConditions.require(pcrs={1: bytes(48)}), recipient_required=False)
        assert error_of(client.generate_random, NumberOfBytes=8, Recipient=recipient(documents["good"]))[:2] == DENIED
        simulator.set_conditions(None)
        client.generate_random(NumberOfBytes=8)


def test_not_action_allow_gives_no_plaintext_without_recipient(documents: dict[str, bytes | None]) -> None:
    """An Allow of every action but GenerateRandom, over the wire: GenerateRandom is denied, with or without a
    Recipient (issue 12, item 15: NotAction was read and ignored, so Plaintext came back)."""
    policy = {"Effect": "Allow", "NotAction": "kms:GenerateRandom", "Resource": "*"}
    with SimulatedKms(KmsSimConfig(conditions=AttestationConditions.from_json(policy))) as simulator:
        client = simulator.client()
        assert error_of(client.generate_random, NumberOfBytes=8)[:2] == DENIED
        assert error_of(client.generate_random, NumberOfBytes=8, Recipient=recipient(documents["good"]))[:2] == DENIED
        simulator.set_conditions(AttestationConditions.from_json([
            {"Effect": "Allow", "Action": "kms:Generate*", "Resource": "*"},
            {"Effect": "Deny", "Action": "kms:*", "Resource": "*",
             "Condition": {"Null": {"kms:RecipientAttestation:ImageSha384": "true"}}}]))
        assert error_of(client.generate_random, NumberOfBytes=8)[:2] == DENIED
        assert "CiphertextForRecipient" in client.generate_random(NumberOfBytes=8,
                                                                  Recipient=recipient(documents["good"]))


def test_key_policy_statement_is_accepted_as_conditions(documents: dict[str, bytes | None]) -> None:
    statement = {
        "Sid": "Enable enclave data key generation",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:role/enclave"},
        "Action": ["kms:GenerateRandom", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {"kms:RecipientAttestation:PCR0": PCR0.hex().upper(),
                                                 "kms:RecipientAttestation:ImageSha384": PCR0.hex()}},
    }
    with SimulatedKms(KmsSimConfig(conditions=AttestationConditions.from_json(statement))) as simulator:
        client = simulator.client()
        client.generate_random(NumberOfBytes=8, Recipient=recipient(documents["good"]))
        assert error_of(client.generate_random, NumberOfBytes=8, Recipient=recipient(documents["debug"]))[:2] == DENIED
        assert error_of(client.generate_random, NumberOfBytes=8)[:2] == DENIED


# --- trust roots -------------------------------------------------------------------------------------------

def test_aws_root_refuses_fixture_documents(documents: dict[str, bytes | None]) -> None:
    with SimulatedKms(KmsSimConfig(root="aws")) as simulator:
        code, status, message = error_of(simulator.client().generate_random, NumberOfBytes=8,
                                         Recipient=recipient(documents["good"]))
        assert (code, status) == INVALID
        assert "chain" in message


def test_pem_root_accepts_its_own_documents(tmp_path: Path, documents: dict[str, bytes | None]) -> None:
    root_pem = tmp_path / "foreign-root.pem"
    root_pem.write_bytes(foreign_pki().root.public_bytes(serialization.Encoding.PEM))
    with SimulatedKms(KmsSimConfig(root=str(root_pem))) as simulator:
        client = simulator.client()
        response = client.generate_random(NumberOfBytes=8, Recipient=recipient(documents["foreign-root"]))
        assert len(decrypt(response["CiphertextForRecipient"], rsa_key())) == 8
        assert error_of(client.generate_random, NumberOfBytes=8, Recipient=recipient(documents["good"]))[:2] == INVALID


def test_envelope_is_base64_on_the_wire(sim: SimulatedKms) -> None:
    """The JSON answer carries the blob as base64, as the AWS JSON protocol says (checked below botocore)."""
    captured: dict[str, bytes] = {}

    def keep_body(response_dict: dict[str, Any], **_: Any) -> None:
        captured["body"] = response_dict["body"]

    client = sim.client()
    client.meta.events.register("before-parse.kms.GenerateRandom", keep_body)
    response = client.generate_random(NumberOfBytes=16, Recipient=recipient(good_document()))
    text = captured["body"].decode()
    encoded = text.split('"CiphertextForRecipient":"')[1].split('"')[0]
    assert base64.b64decode(encoded, validate=True) == response["CiphertextForRecipient"]
    assert "Plaintext" not in text
