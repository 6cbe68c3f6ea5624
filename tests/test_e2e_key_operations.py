"""Decrypt, GenerateDataKey, GenerateDataKeyPair and DeriveSharedSecret end to end: the enclave client (Python
API and CLI) <- a real ``nitrokit parent`` process <- boto3 over HTTP <- a KMS on loopback.

The KMS is the simulated one (nitrokit.kms: keys made with boto3 CreateKey, the attestation document verified,
key policies evaluated). A KMS that misbehaves (a secret in the clear beside the envelope, a recorded real
answer) and the checks of the exact request bytes use the stand-in of tests/key_kms.py (real shapes, real CMS
envelopes to the document's key). The hostile-parent tests answer the client from a forging parent.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nitrokit.enclave.errors import KmsCallError, UntrustedAnswerError
from nitrokit.enclave.kms_client import KmsClient, RetryPolicy
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.errors import UsageError
from nitrokit.wire import DECRYPT, GENERATE_DATA_KEY, ErrorCode, RemoteError, WireClient, recipient_info
from nitrokit.wire.messages import Response
from tests.cli_helpers import run_cli
from tests.conftest import vector_path
from tests.key_kms import ALIAS, ECDH_KEY_ID, SYMMETRIC_KEY_ID, KeyKms, key_arn, key_kms
from tests.relay import RecordingRelay
from tests.test_e2e_generate_random import ForgingParent, _document_key, _envelope, _start_parent

FAST_RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)


@pytest.fixture(scope="module")
def kms() -> Iterator[KeyKms]:
    with key_kms() as stand_in:
        yield stand_in


@pytest.fixture(autouse=True)
def _no_leak(kms: KeyKms) -> Iterator[None]:
    yield
    kms.leak = False
    kms.fixed_answer = None


def _parent_for(kms_url: str, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[str]:
    """A real parent process relaying to ``kms_url`` on a Unix socket: yields its address, stops it after."""
    process = _start_parent(f"unix://{tmp_path_factory.mktemp(name) / 'parent.sock'}", kms_url)
    try:
        yield process.first_line
    finally:
        assert process.stop() == 0, process.stderr_text()


@pytest.fixture(scope="module")
def parent(kms: KeyKms, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _parent_for(kms.url, tmp_path_factory, "parent")


@pytest.fixture(scope="module")
def simulator() -> Iterator[Any]:
    from nitrokit.kms import SimulatedKms

    with SimulatedKms() as simulated:
        yield simulated


@pytest.fixture(scope="module")
def sim_parent(simulator: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _parent_for(simulator.url, tmp_path_factory, "sim")


@pytest.fixture(scope="module")
def sim_key(simulator: Any) -> dict[str, str]:
    """A symmetric key made with boto3 CreateKey, and an alias for it."""
    boto = simulator.client()
    metadata = boto.create_key(Description="issue 13")["KeyMetadata"]
    boto.create_alias(AliasName="alias/issue13", TargetKeyId=metadata["KeyId"])
    return {"id": metadata["KeyId"], "arn": metadata["Arn"], "alias": "alias/issue13"}




def _client(parent: str) -> KmsClient:
    return KmsClient(nsm=SimulatedNsm(), parent=parent, retry=FAST_RETRY)


# --- Decrypt and GenerateDataKey ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["id", "arn", "alias"])
def test_simulator_data_key_and_decrypt_through_the_parent(sim_parent: str, sim_key: dict[str, str],
                                                           simulator: Any, form: str) -> None:
    context = {"tenant": "t-9"}
    with _client(sim_parent) as client:
        data_key = client.generate_data_key(sim_key[form], key_spec="AES_256", encryption_context=context)
        opened = client.decrypt(data_key.ciphertext_blob, key_id=sim_key[form], encryption_context=context)
    assert opened.plaintext == data_key.plaintext and len(data_key.plaintext) == 32
    assert data_key.key_id == opened.key_id == sim_key["arn"]
    # boto3, talking to KMS itself, opens the same blob to the same key (no Recipient: Plaintext).
    assert simulator.client().decrypt(CiphertextBlob=data_key.ciphertext_blob, EncryptionContext=context)[
        "Plaintext"] == data_key.plaintext


def test_simulator_refusals_through_the_parent(sim_parent: str, sim_key: dict[str, str], simulator: Any) -> None:
    blob = simulator.client().encrypt(KeyId=sim_key["id"], Plaintext=b"p", EncryptionContext={"a": "1"})[
        "CiphertextBlob"]
    with _client(sim_parent) as client:
        assert client.decrypt(blob, encryption_context={"a": "1"}).plaintext == b"p"
        refusals = {}
        for name, call in (
            ("context", lambda: client.decrypt(blob, encryption_context={"a": "2"})),
            ("unknown key", lambda: client.generate_data_key("alias/none", number_of_bytes=8)),
        ):
            with pytest.raises(KmsCallError) as info:
                call()
            refusals[name] = info.value.code
    assert refusals == {"context": "InvalidCiphertextException", "unknown key": "NotFoundException"}


def test_a_dry_run_through_the_parent(sim_parent: str, sim_key: dict[str, str]) -> None:
    """DryRun crosses the parent as sent; KMS's DryRunOperationException (HTTP 412) comes back, not retryable."""
    document = SimulatedNsm().attestation(public_key=_rsa_public_key())
    request = GENERATE_DATA_KEY.encode_request({"KeyId": sim_key["alias"], "KeySpec": "AES_256", "DryRun": True,
                                                "Recipient": recipient_info(document)})
    with WireClient(sim_parent) as wire, pytest.raises(RemoteError) as info:
        wire.call("GenerateDataKey", request)
    assert info.value.code == "DryRunOperationException" and not info.value.retryable


def _pcr0_bound_key(simulator: Any, actions: list[str], **create: Any) -> str:
    """A key whose policy lets ``actions`` only to an enclave with this image's PCR0 (as `nitrokit policy`
    writes the statement), beside an administrators' statement for everything else."""
    from nitrokit.policy_statements import build_statement

    root = "arn:aws:iam::111122223333:root"
    pcr0 = SimulatedNsm().describe_pcr(0).data
    statements = [{"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": root}, "NotAction": actions,
                   "Resource": "*"}, build_statement(pcrs={0: pcr0.hex()}, role_arn=root, actions=actions)]
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    return str(simulator.client().create_key(Policy=policy, **create)["KeyMetadata"]["Arn"])


def test_a_key_policy_bound_to_pcr0_through_the_parent(sim_parent: str, simulator: Any) -> None:
    """This enclave gets its data key, key pair, Decrypt and shared secret; an enclave with another PCR0 is
    refused each with AccessDeniedException, not retried."""
    key = _pcr0_bound_key(simulator, ["kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair"])
    ecdh_key = _pcr0_bound_key(simulator, ["kms:DeriveSharedSecret"], KeySpec="ECC_NIST_P256",
                               KeyUsage="KEY_AGREEMENT")
    peer = _peer_public_key()
    with _client(sim_parent) as client:
        data_key = client.generate_data_key(key, key_spec="AES_256")
        assert client.decrypt(data_key.ciphertext_blob).plaintext == data_key.plaintext
        assert client.generate_data_key_pair(key, "ECC_NIST_P256").key_id == key
        assert len(client.derive_shared_secret(ecdh_key, peer).shared_secret) == 32
    calls: dict[str, Callable[[KmsClient], object]] = {
        "kms:Decrypt": lambda c: c.decrypt(data_key.ciphertext_blob),
        "kms:GenerateDataKey": lambda c: c.generate_data_key(key, key_spec="AES_256"),
        "kms:GenerateDataKeyPair": lambda c: c.generate_data_key_pair(key, "ECC_NIST_P256"),
        "kms:DeriveSharedSecret": lambda c: c.derive_shared_secret(ecdh_key, peer),
    }
    with KmsClient(nsm=SimulatedNsm(pcrs={0: b"\x77" * 48}), parent=sim_parent, retry=FAST_RETRY) as other_image:
        for action, call in calls.items():
            with pytest.raises(KmsCallError) as denied:
                call(other_image)
            assert denied.value.code == "AccessDeniedException" and denied.value.attempts == 1, action
            assert f"perform: {action} on" in str(denied.value), action


def _secret_forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), base64.b64encode(secret), base64.b64encode(secret[:12])]


def test_the_parent_never_sees_a_data_key(simulator: Any, sim_key: dict[str, str], kms: KeyKms,
                                          tmp_path: Path) -> None:
    """Every byte on both of the parent's legs is recorded: the data key crosses neither. With a KMS that leaks
    it beside the envelope, it is on the KMS leg only: the parent drops that answer."""
    traffic: dict[str, bytes] = {}
    for name, url in (("simulator", simulator.url), ("leaking", kms.url)):
        kms.leak = name == "leaking"
        with RecordingRelay("tcp://127.0.0.1:0", url.replace("http://", "tcp://")) as kms_leg:
            process = _start_parent(f"unix://{tmp_path / f'{name}.sock'}",
                                    str(kms_leg.address).replace("tcp://", "http://"))
            try:
                with RecordingRelay(f"unix://{tmp_path / f'{name}-relay.sock'}", process.first_line) as enclave_leg, \
                        _client(str(enclave_leg.address)) as client:
                    if name == "simulator":
                        data_key = client.generate_data_key(sim_key["id"], key_spec="AES_256")
                        assert client.decrypt(data_key.ciphertext_blob).plaintext == data_key.plaintext
                        secret = data_key.plaintext
                    else:
                        with pytest.raises(KmsCallError, match="PlaintextRefused"):
                            client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256")
                        body = bytes(kms_leg.downstream).split(b"\r\n\r\n", 1)[1]
                        secret = base64.b64decode(json.loads(body)["Plaintext"])
                traffic[f"{name} kms"], traffic[f"{name} enclave"] = kms_leg.recorded(), enclave_leg.recorded()
            finally:
                process.stop()
            log = process.stderr_text().encode()
        for form in _secret_forms(secret):
            assert form not in traffic[f"{name} enclave"] and form not in log, name
        if name == "simulator":
            assert b"CiphertextForRecipient" in traffic["simulator enclave"]
            assert b'"Plaintext"' not in traffic["simulator kms"] + traffic["simulator enclave"]
            assert not any(form in traffic["simulator kms"] for form in _secret_forms(secret))
        else:
            assert base64.b64encode(secret) in traffic["leaking kms"]  # it was there, and went no further


def test_a_real_kms_generate_data_key_envelope_through_the_parent(parent: str, kms: KeyKms,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Real AWS KMS's CiphertextForRecipient for a GenerateDataKey (the enclaver sample, whose private key is
    published) relayed by the parent and opened by the client: the 32 bytes the sample's README names."""
    from nitrokit.enclave.keys import EphemeralKeyPair

    envelope = vector_path("kms-recipient", "enclaver-generatedatakey.ber").read_bytes()
    private = serialization.load_pem_private_key(
        vector_path("kms-recipient", "enclaver-generatedatakey.key.pem").read_bytes(), password=None)
    # The sample's key pair stands in for the ephemeral one: real KMS encrypted to it, and to no other.
    monkeypatch.setattr(EphemeralKeyPair, "generate", classmethod(lambda cls, *, bits=2048: EphemeralKeyPair(
        private)))  # type: ignore[arg-type]
    kms.fixed_answer = {"KeyId": key_arn(SYMMETRIC_KEY_ID), "CiphertextBlob": base64.b64encode(b"blob").decode(),
                        "CiphertextForRecipient": base64.b64encode(envelope).decode()}
    with _client(parent) as client:
        data_key = client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256")
    assert data_key.plaintext.hex() == "3be82c440f06cb4d44c4c2ec3bf30d472407d3a9125aa4c1842b98f6bdd26e41"


def test_number_of_bytes_and_aes_128(sim_parent: str, sim_key: dict[str, str]) -> None:
    with _client(sim_parent) as client:
        assert len(client.generate_data_key(sim_key["id"], number_of_bytes=1024).plaintext) == 1024
        assert len(client.generate_data_key(sim_key["alias"], key_spec="AES_128").plaintext) == 16


def test_usage_errors_before_any_call(kms: KeyKms) -> None:
    calls = len(kms.calls)
    client = KmsClient(nsm=SimulatedNsm(), parent="unix:///nonexistent")
    for bad in ({}, {"key_spec": "AES_256", "number_of_bytes": 32}, {"number_of_bytes": 0},
                {"key_spec": "AES_512"}):
        with pytest.raises(UsageError):
            client.generate_data_key(SYMMETRIC_KEY_ID, **bad)
    with pytest.raises(UsageError, match="CiphertextBlob must be 1 to 6144 bytes"):
        client.decrypt(b"")
    with pytest.raises(UsageError, match="GrantTokens must have 0 to 10 items"):
        client.decrypt(b"x", grant_tokens=["t"] * 11)
    assert len(kms.calls) == calls


def test_the_parent_drops_an_answer_carrying_plaintext(parent: str, kms: KeyKms) -> None:
    kms.leak = True
    with _client(parent) as client, pytest.raises(KmsCallError) as info:
        client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256")
    assert info.value.code == ErrorCode.PLAINTEXT_REFUSED and "Plaintext" in str(info.value)


def test_the_relayed_request_is_the_kms_json_the_enclave_sent(parent: str, kms: KeyKms) -> None:
    """Every member of each operation crosses the parent and boto3 as the enclave wrote it."""
    document = base64.b64encode(SimulatedNsm().attestation(public_key=_rsa_public_key())).decode()
    recipient = {"AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}
    common = {"GrantTokens": ["grant-1", "grant-2"], "DryRun": False, "Recipient": recipient}
    requests = {
        "Decrypt": {"CiphertextBlob": base64.b64encode(kms.encrypt(b"p", {"a": "b"})).decode(),
                    "EncryptionContext": {"a": "b"}, "KeyId": SYMMETRIC_KEY_ID,
                    "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "DryRunModifiers": [], **common},
        "GenerateDataKey": {"KeyId": ALIAS, "NumberOfBytes": 64, "EncryptionContext": {"é": "ü"}, **common},
        "GenerateDataKeyPair": {"KeyId": ALIAS, "KeyPairSpec": "ECC_NIST_P256", "EncryptionContext": {}, **common},
        "DeriveSharedSecret": {"KeyId": ECDH_KEY_ID, "KeyAgreementAlgorithm": "ECDH",
                               "PublicKey": base64.b64encode(_peer_public_key()).decode(), **common},
    }
    with WireClient(parent) as wire:
        for operation, request in requests.items():
            answer = wire.call(operation, request)
            assert kms.bodies[-1] == request, operation
            assert "CiphertextForRecipient" in answer and kms.calls[-1] == operation


def test_the_parent_relays_key_operations_only_with_a_recipient(kms: KeyKms, tmp_path: Path) -> None:
    process = _start_parent(f"unix://{tmp_path / 'p.sock'}", kms.url, "--allow-plaintext")
    calls = len(kms.calls)
    try:
        with WireClient(process.first_line) as wire, pytest.raises(RemoteError) as info:
            wire.call("GenerateDataKey", GENERATE_DATA_KEY.encode_request({"KeyId": ALIAS, "KeySpec": "AES_256"}))
    finally:
        assert process.stop() == 0
    assert info.value.code == ErrorCode.RECIPIENT_REQUIRED and "key operations only with" in info.value.remote_message
    assert len(kms.calls) == calls


def test_the_operator_chooses_the_operations(kms: KeyKms, tmp_path: Path) -> None:
    process = _start_parent(f"unix://{tmp_path / 'p.sock'}", kms.url, "--operations", "GenerateDataKey")
    try:
        with _client(process.first_line) as client:
            data_key = client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256")
            with pytest.raises(KmsCallError) as info:
                client.decrypt(data_key.ciphertext_blob)
        log = process.stderr_text()
    finally:
        assert process.stop() == 0
    assert info.value.code == ErrorCode.UNKNOWN_OPERATION and "not one of GenerateDataKey" in str(info.value)
    assert "operations GenerateDataKey," in log


def test_parent_operations_option_is_checked(tmp_path: Path) -> None:
    for value, fragment in (("Encrypt", "Encrypt is not one the parent can relay"),
                            ("Decrypt,Decrypt", "twice"), ("", "not one the parent")):
        result = run_cli("parent", "--listen", f"unix://{tmp_path / 'x.sock'}", "--region", "us-east-1",
                         "--operations", value)
        assert result.returncode == 2 and fragment in result.stderr.decode(), result.stderr


# --- a hostile parent: what the client checks --------------------------------------------------------------


@contextlib.contextmanager
def _forging_client(tmp_path: Path, members: Callable[[dict[str, Any]], dict[str, Any]]) -> Iterator[KmsClient]:
    """A client whose parent answers every request with ``members(request)``."""
    forger = ForgingParent(tmp_path, lambda request: Response(id=None, response=members(request)))
    try:
        with _client(forger.address) as client:
            yield client
    finally:
        forger.close()


def _data_key_answer(size: int = 32, **override: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def build(request: dict[str, Any]) -> dict[str, Any]:
        answer = {"KeyId": key_arn(SYMMETRIC_KEY_ID), "CiphertextBlob": base64.b64encode(b"blob").decode(),
                  "CiphertextForRecipient": _envelope(b"\x07" * size, _document_key(request))}
        answer.update(override)
        return {name: value for name, value in answer.items() if value is not None}
    return build


FORGED_DATA_KEYS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "plaintext beside the envelope": (_data_key_answer(Plaintext=base64.b64encode(b"\x07" * 32).decode()),
                                      "carries Plaintext"),
    "a short key": (_data_key_answer(16), "holds 16 bytes, 32 were asked for"),
    "another key's id": (_data_key_answer(KeyId=key_arn(ECDH_KEY_ID)), "not the key"),
    "no key id": (_data_key_answer(KeyId=None), "no KeyId"),
    "no ciphertext blob": (_data_key_answer(CiphertextBlob=None), "no CiphertextBlob"),
}


def test_a_forged_key_id_is_escaped_in_the_refusal(tmp_path: Path) -> None:
    """The answer's KeyId is the parent's text: it reaches the error (and the terminal) escaped."""
    hostile = key_arn(ECDH_KEY_ID) + "\x1b[2J\x1b[32mVALID\n"
    with _forging_client(tmp_path, _data_key_answer(KeyId=hostile)) as client, \
            pytest.raises(UntrustedAnswerError, match="not the key") as caught:
        client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256")
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)
    assert "\\x1b[2J" in str(caught.value)


@pytest.mark.parametrize("name", FORGED_DATA_KEYS)
def test_forged_data_keys_are_refused(name: str, tmp_path: Path) -> None:
    members, message = FORGED_DATA_KEYS[name]
    with _forging_client(tmp_path, members) as client, pytest.raises(UntrustedAnswerError, match=message):
        client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256")


def test_a_refused_answer_retires_the_key_pair(tmp_path: Path) -> None:
    identities: list[str] = []
    forger = ForgingParent(tmp_path, lambda request: Response(id=None, response=_data_key_answer(
        KeyId=key_arn(ECDH_KEY_ID))(request)))
    try:
        with KmsClient(nsm=SimulatedNsm(), parent=forger.address, retry=FAST_RETRY,
                       trace=lambda line: identities.append(line) if line.startswith("new identity") else None
                       ) as client:
            for _ in range(2):
                with pytest.raises(UntrustedAnswerError, match="not the key"):
                    client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256")
    finally:
        forger.close()
    assert len(identities) == 2  # a key that has seen a bad answer is never used again


def test_a_forged_data_key_of_the_right_shape_is_accepted(tmp_path: Path) -> None:
    """What the envelope cannot show: a parent that answers with a key of its own choosing, well formed."""
    with _forging_client(tmp_path, _data_key_answer()) as client:
        assert client.generate_data_key(SYMMETRIC_KEY_ID, key_spec="AES_256").plaintext == b"\x07" * 32


def test_a_substituted_decrypt_plaintext_is_caught_by_the_aead_that_uses_it(sim_parent: str, sim_key: dict[str, str],
                                                                            tmp_path: Path) -> None:
    """Decrypt of a data key later used with AEAD: a substituted key fails the tag (docs/threat-model.md)."""
    with _client(sim_parent) as client:
        data_key = client.generate_data_key(sim_key["id"], key_spec="AES_256")
    sealed = AESGCM(data_key.plaintext).encrypt(b"\x00" * 12, b"application data", None)
    with _forging_client(tmp_path, lambda request: {
            "KeyId": sim_key["arn"], "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
            "CiphertextForRecipient": _envelope(b"\x01" * 32, _document_key(request))}) as client:
        substituted = client.decrypt(data_key.ciphertext_blob).plaintext
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        AESGCM(substituted).decrypt(b"\x00" * 12, sealed, None)


def test_a_forged_decrypt_algorithm_is_refused(tmp_path: Path) -> None:
    with _forging_client(tmp_path, lambda request: {
            "KeyId": key_arn(SYMMETRIC_KEY_ID), "EncryptionAlgorithm": "RSAES_OAEP_SHA_1",
            "CiphertextForRecipient": _envelope(b"x", _document_key(request))}) as client, \
            pytest.raises(UntrustedAnswerError, match="EncryptionAlgorithm"):
        client.decrypt(b"blob")


# --- the command line -------------------------------------------------------------------------------------


def _cli(parent: str, *args: str) -> Any:
    result = run_cli("enclave", *args, "--parent", parent, "--nsm", "simulated")
    assert result.returncode == 0, result.stderr
    return result


def test_generate_data_key_then_decrypt_on_the_command_line(sim_parent: str, sim_key: dict[str, str],
                                                            tmp_path: Path) -> None:
    made = json.loads(_cli(sim_parent, "generate-data-key", "--key-id", sim_key["alias"], "--key-spec", "AES_256",
                           "--encryption-context", "app=x", "--json").stdout)
    assert set(made) == {"Plaintext", "CiphertextBlob", "KeyId"} and made["KeyId"] == sim_key["arn"]
    blob = tmp_path / "blob"
    blob.write_bytes(base64.b64decode(made["CiphertextBlob"]))
    opened = json.loads(_cli(sim_parent, "decrypt", "--ciphertext-blob", str(blob), "--encryption-context", "app=x",
                             "--json").stdout)
    assert opened == {"Plaintext": made["Plaintext"], "KeyId": made["KeyId"], "EncryptionAlgorithm":
                      "SYMMETRIC_DEFAULT"}
    (tmp_path / "blob.b64").write_text(made["CiphertextBlob"] + "\n")  # what the aws CLI writes: base64 text
    hex_out = _cli(sim_parent, "decrypt", "--ciphertext-blob", str(tmp_path / "blob.b64"), "--encryption-context",
                   "app=x").stdout.decode().strip()
    assert hex_out == base64.b64decode(made["Plaintext"]).hex()
    size = _cli(sim_parent, "generate-data-key", "--key-id", sim_key["id"], "--bytes", "5", "--format", "base64")
    assert len(base64.b64decode(size.stdout)) == 5


def test_cli_usage_errors(parent: str, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    for args, fragment in (
        (("generate-data-key", "--key-id", "k"), b"one of the arguments --key-spec --bytes is required"),
        (("generate-data-key", "--key-id", "k", "--bytes", "0"), b"NumberOfBytes must be from 1 to 1024"),
        (("decrypt", "--ciphertext-blob", str(blob), "--encryption-context", "novalue"), b"KEY=VALUE"),
        (("decrypt", "--ciphertext-blob", str(blob), "--encryption-context", "a=1", "--encryption-context", "a=2"),
         b"twice"),
    ):
        result = run_cli("enclave", *args, "--parent", parent, "--nsm", "simulated")
        assert result.returncode == 2 and fragment in result.stderr, (args, result.stderr)


def test_wire_shapes_follow_the_model() -> None:
    assert DECRYPT.decode_request({"CiphertextBlob": "eA==", "DryRun": True, "GrantTokens": ["g"],
                                   "EncryptionContext": {"k": "v"}})["CiphertextBlob"] == b"x"
    assert DECRYPT.decode_request({"DryRun": True, "DryRunModifiers": ["IGNORE_CIPHERTEXT"]})
    for bad, fragment in (({}, "CiphertextBlob is required"), ({"CiphertextBlob": "eA==", "DryRun": 1}, "true or"),
                          ({"CiphertextBlob": "eA==", "EncryptionContext": {"k": 1}}, "EncryptionContext.k must"),
                          ({"CiphertextBlob": "eA==", "EncryptionContext": []}, "must be an object"),
                          ({"CiphertextBlob": "eA==", "KeyId": ""}, "KeyId must be 1 to 2048")):
        with pytest.raises(Exception, match=fragment):
            DECRYPT.decode_request(bad)
    with pytest.raises(Exception, match="exactly one of NumberOfBytes and KeySpec"):
        GENERATE_DATA_KEY.decode_request({"KeyId": "k", "NumberOfBytes": 32, "KeySpec": "AES_256"})
    with pytest.raises(Exception, match="KeyMaterialId must match"):
        DECRYPT.decode_response({"KeyMaterialId": "G" * 64})


def _rsa_public_key() -> bytes:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _peer_public_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- GenerateDataKeyPair and DeriveSharedSecret ------------------------------------------------------------


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "ECC_SECG_P256K1", "RSA_2048"])
def test_simulator_data_key_pair_through_the_parent(sim_parent: str, sim_key: dict[str, str], simulator: Any,
                                                    spec: str) -> None:
    with _client(sim_parent) as client:
        pair = client.generate_data_key_pair(sim_key["alias"], spec, encryption_context={"use": "sign"})
        again = client.decrypt(pair.private_key_ciphertext_blob, encryption_context={"use": "sign"})
    assert again.plaintext == pair.private_key_plaintext and pair.key_id == sim_key["arn"]
    assert simulator.client().decrypt(CiphertextBlob=pair.private_key_ciphertext_blob,
                                      EncryptionContext={"use": "sign"})["Plaintext"] == pair.private_key_plaintext


def test_simulator_shared_secret_through_the_parent(sim_parent: str, simulator: Any) -> None:
    boto = simulator.client()
    key = boto.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    kms_public = serialization.load_der_public_key(boto.get_public_key(KeyId=key["KeyId"])["PublicKey"])
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(ec.SECP256R1())
    peer_der = peer.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    with _client(sim_parent) as client:
        shared = client.derive_shared_secret(key["Arn"], peer_der)
    assert shared.shared_secret == peer.exchange(ec.ECDH(), kms_public) and shared.key_id == key["Arn"]


def test_the_parent_drops_private_keys_and_shared_secrets_in_the_clear(parent: str, kms: KeyKms) -> None:
    kms.leak = True
    with _client(parent) as client:
        with pytest.raises(KmsCallError, match="PrivateKeyPlaintext") as pair:
            client.generate_data_key_pair(ALIAS, "ECC_NIST_P256")
        with pytest.raises(KmsCallError, match="SharedSecret") as shared:
            client.derive_shared_secret(ECDH_KEY_ID, _peer_public_key())
    assert pair.value.code == shared.value.code == ErrorCode.PLAINTEXT_REFUSED


def _pair_answer(spec: str, private_spec: str | None = None, *, public_from_other: bool = False,
                 **override: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def der(key: Any) -> tuple[bytes, bytes]:
        return (key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
                key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))

    def build(request: dict[str, Any]) -> dict[str, Any]:
        curve = ec.SECP384R1() if (private_spec or spec) == "ECC_NIST_P384" else ec.SECP256R1()
        private_der, public_der = der(ec.generate_private_key(curve))
        if public_from_other:
            public_der = der(ec.generate_private_key(curve))[1]
        answer = {"KeyId": key_arn(SYMMETRIC_KEY_ID), "KeyPairSpec": spec, "PublicKey": base64.b64encode(
            public_der).decode(), "PrivateKeyCiphertextBlob": base64.b64encode(b"blob").decode(),
            "CiphertextForRecipient": _envelope(private_der, _document_key(request))}
        answer.update(override)
        return {name: value for name, value in answer.items() if value is not None}
    return build


FORGED_PAIRS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], str]] = {
    "a key of another curve": (_pair_answer("ECC_NIST_P256", "ECC_NIST_P384"), "not a ECC_NIST_P256 key"),
    "another spec echoed": (_pair_answer("ECC_NIST_P384"), "KeyPairSpec is ECC_NIST_P384"),
    "a public key of another pair": (_pair_answer("ECC_NIST_P256", public_from_other=True), "not the public half"),
    "no public key": (_pair_answer("ECC_NIST_P256", PublicKey=None), "no PublicKey"),
    "not a key at all": (lambda r: {**_pair_answer("ECC_NIST_P256")(r), "CiphertextForRecipient":
                                    _envelope(b"\x30\x03\x02\x01\x00", _document_key(r))}, "not a PKCS#8 DER key"),
}


@pytest.mark.parametrize("name", FORGED_PAIRS)
def test_forged_key_pairs_are_refused(name: str, tmp_path: Path) -> None:
    members, message = FORGED_PAIRS[name]
    with _forging_client(tmp_path, members) as client, pytest.raises(UntrustedAnswerError, match=message):
        client.generate_data_key_pair(SYMMETRIC_KEY_ID, "ECC_NIST_P256")


def test_a_forged_shared_secret_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    with _forging_client(tmp_path, lambda request: {
            "KeyId": key_arn(ECDH_KEY_ID), "KeyAgreementAlgorithm": "ECDH",
            "CiphertextForRecipient": _envelope(b"\x01" * 48, _document_key(request))}) as client, \
            pytest.raises(UntrustedAnswerError, match="holds 48 bytes, 32"):
        client.derive_shared_secret(ECDH_KEY_ID, _peer_public_key())


def test_pair_and_derive_usage_errors() -> None:
    client = KmsClient(nsm=SimulatedNsm(), parent="unix:///nonexistent")
    with pytest.raises(UsageError, match="key pair spec must be one of"):
        client.generate_data_key_pair(SYMMETRIC_KEY_ID, "ML_KEM_768")
    with pytest.raises(UsageError, match="not a DER SubjectPublicKeyInfo"):
        client.derive_shared_secret(ECDH_KEY_ID, b"not a key")
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ed_der = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(UsageError, match="EC key on P-256"):
        client.derive_shared_secret(ECDH_KEY_ID, ed_der)


def test_pair_and_derive_on_the_command_line(sim_parent: str, sim_key: dict[str, str], simulator: Any,
                                             tmp_path: Path) -> None:
    pair = json.loads(_cli(sim_parent, "generate-data-key-pair", "--key-id", sim_key["alias"], "--key-pair-spec",
                           "ECC_NIST_P384", "--json").stdout)
    assert set(pair) == {"PrivateKeyPlaintext", "PublicKey", "PrivateKeyCiphertextBlob", "KeyId", "KeyPairSpec"}
    private = serialization.load_der_private_key(base64.b64decode(pair["PrivateKeyPlaintext"]), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp384r1"
    boto = simulator.client()
    key = boto.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    kms_public = serialization.load_der_public_key(boto.get_public_key(KeyId=key["KeyId"])["PublicKey"])
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "peer.pem"
    pem.write_bytes(peer.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    shared = json.loads(_cli(sim_parent, "derive-shared-secret", "--key-id", key["Arn"], "--public-key", str(pem),
                             "--json").stdout)
    assert base64.b64decode(shared["SharedSecret"]) == peer.exchange(ec.ECDH(), kms_public)
    assert shared["KeyAgreementAlgorithm"] == "ECDH" and shared["KeyId"] == key["Arn"]
    plain = _cli(sim_parent, "derive-shared-secret", "--key-id", key["KeyId"], "--public-key", str(pem))
    assert plain.stdout.decode().strip() == base64.b64decode(shared["SharedSecret"]).hex()


def test_a_refused_answer_on_the_command_line_prints_no_secret(tmp_path: Path) -> None:
    forger = ForgingParent(tmp_path, lambda request: Response(id=None, response=_data_key_answer(16)(request)))
    command = ("enclave", "generate-data-key", "--key-id", SYMMETRIC_KEY_ID, "--key-spec", "AES_256", "--parent",
               forger.address, "--nsm", "simulated")
    try:
        text, as_json = run_cli(*command), run_cli(*command, "--json")
    finally:
        forger.close()
    assert text.returncode == as_json.returncode == 1
    assert text.stdout == b"" and b"holds 16 bytes, 32 were asked for" in text.stderr
    assert b"Traceback" not in text.stderr + as_json.stderr
    error = json.loads(as_json.stdout)["error"]
    assert error["kind"] == "failed" and "holds 16 bytes" in error["message"]
    assert (b"\x07" * 16).hex().encode() not in text.stderr + as_json.stdout


def test_an_ed25519_key_pair_is_checked_too(tmp_path: Path) -> None:
    """ECC_NIST_EDWARDS25519, which the simulated KMS does not make: the client's checks, from a forging parent."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    private_der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_der = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def answer(request: dict[str, Any], spec: str) -> dict[str, Any]:
        return {"KeyId": key_arn(SYMMETRIC_KEY_ID), "KeyPairSpec": spec, "PublicKey": base64.b64encode(
            public_der).decode(), "PrivateKeyCiphertextBlob": base64.b64encode(b"blob").decode(),
            "CiphertextForRecipient": _envelope(private_der, _document_key(request))}

    with _forging_client(tmp_path, lambda r: answer(r, "ECC_NIST_EDWARDS25519")) as client:
        pair = client.generate_data_key_pair(SYMMETRIC_KEY_ID, "ECC_NIST_EDWARDS25519")
    assert pair.private_key_plaintext == private_der and pair.public_key == public_der
    with _forging_client(tmp_path, lambda r: answer(r, "ECC_NIST_P256")) as client, \
            pytest.raises(UntrustedAnswerError, match="not a ECC_NIST_P256 key"):
        client.generate_data_key_pair(SYMMETRIC_KEY_ID, "ECC_NIST_P256")
