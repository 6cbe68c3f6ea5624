"""Tunnel mode end to end, beside relay mode: the enclave client (Python API and CLI) <- a real ``nitrokit parent``
process in each mode <- the simulated KMS over HTTPS (certificate from the fixture TLS CA).

Relay mode: the parent calls KMS with boto3 (over HTTPS, trusting the fixture CA). Tunnel mode: the parent
relays bytes, the enclave runs TLS, SigV4 and the KMS protocol itself, with credentials from the parent's
credentials channel. Every operation gives the same results both ways, and the same KMS errors; what crosses
the tunnel parent is TLS records only (neither the attestation document nor any secret); the tunnel survives
the parent restarting between calls.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.enclave.errors import KmsCallError
from nitrokit.enclave.kms_client import KmsClient, RetryPolicy
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.testing.processes import NitrokitProcess, simulator_environment
from tests.cli_helpers import run_cli
from tests.kms_helpers import make_keys
from tests.relay import RecordingRelay

REGION = "us-east-1"
KMS_HOST = f"kms.{REGION}.amazonaws.com"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
MODES = ("relay", "tunnel")


@pytest.fixture(scope="module")
def kms() -> Iterator[Any]:
    from nitrokit.kms import SimulatedKms

    with SimulatedKms(tls=True) as simulated:
        yield simulated


def _tunnel_parent(kms: Any, folder: Path) -> NitrokitProcess:
    host, port = kms.address
    return NitrokitProcess("parent", "--mode", "tunnel", "--listen", f"unix://{folder / 'tunnel.sock'}", "--target",
                           f"{host}:{port}", "--credentials-listen", f"unix://{folder / 'credentials.sock'}",
                           "--region", REGION, env=simulator_environment(), lines=2)


@pytest.fixture(scope="module")
def parents(kms: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, NitrokitProcess]]:
    """One parent process per mode, both in front of the same simulated KMS."""
    folder = tmp_path_factory.mktemp("parents")
    env = {**simulator_environment(), "AWS_CA_BUNDLE": str(kms.ca_file)}  # relay mode's boto3 trusts the fixture CA
    relay = NitrokitProcess("parent", "--listen", f"unix://{folder / 'relay.sock'}", "--endpoint-url", kms.url,
                            "--region", REGION, env=env)
    tunnel = _tunnel_parent(kms, folder)
    relay.start()
    try:
        tunnel.start()
        try:
            yield {"relay": relay, "tunnel": tunnel}
        finally:
            assert tunnel.stop() == 0, tunnel.stderr_text()
    finally:
        assert relay.stop() == 0, relay.stderr_text()


def _client(kms: Any, parent: NitrokitProcess, mode: str, nsm: SimulatedNsm | None = None) -> KmsClient:
    if mode == "relay":
        return KmsClient(nsm=nsm or SimulatedNsm(), parent=parent.first_line, retry=FAST_RETRY)
    return KmsClient(nsm=nsm or SimulatedNsm(), parent=parent.first_line, mode="tunnel", region=REGION,
                     kms_host=KMS_HOST, ca_file=kms.ca_file, credentials=parent.lines[1], retry=FAST_RETRY)


@pytest.fixture(scope="module")
def clients(kms: Any, parents: dict[str, NitrokitProcess]) -> Iterator[dict[str, KmsClient]]:
    made = {mode: _client(kms, parents[mode], mode) for mode in MODES}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def keys(kms: Any) -> dict[str, str]:
    return make_keys(kms, alias="alias/tunnel-e2e")


# --- the same results in both modes ---------------------------------------------------------------------------


def test_generate_random_both_modes(clients: dict[str, KmsClient]) -> None:
    results = {mode: client.generate_random(48) for mode, client in clients.items()}
    assert all(len(value) == 48 for value in results.values())
    assert results["relay"] != results["tunnel"]


@pytest.mark.parametrize("form", ["id", "arn", "alias"])
def test_data_keys_open_in_the_other_mode(clients: dict[str, KmsClient], keys: dict[str, str], form: str) -> None:
    context = {"tenant": "t-14"}
    for made_by, opened_by in (("relay", "tunnel"), ("tunnel", "relay")):
        data_key = clients[made_by].generate_data_key(keys[form], key_spec="AES_256", encryption_context=context)
        opened = clients[opened_by].decrypt(data_key.ciphertext_blob, encryption_context=context)
        assert opened.plaintext == data_key.plaintext and len(opened.plaintext) == 32
        assert data_key.key_id == opened.key_id == keys["arn"]
        assert opened.encryption_algorithm == "SYMMETRIC_DEFAULT"


def test_decrypt_of_one_blob_is_the_same_in_both_modes(clients: dict[str, KmsClient], keys: dict[str, str],
                                                       kms: Any) -> None:
    blob = kms.client().encrypt(KeyId=keys["arn"], Plaintext=b"the same plaintext")["CiphertextBlob"]
    results = {mode: client.decrypt(blob, key_id=keys["arn"]) for mode, client in clients.items()}
    assert results["relay"].kms_members() == results["tunnel"].kms_members()
    assert results["tunnel"].plaintext == b"the same plaintext"


def test_data_key_pairs_in_both_modes(clients: dict[str, KmsClient], keys: dict[str, str]) -> None:
    pairs = {mode: client.generate_data_key_pair(keys["arn"], "ECC_NIST_P256") for mode, client in clients.items()}
    for mode, pair in pairs.items():
        other = clients["relay" if mode == "tunnel" else "tunnel"]
        # the private key, under the KMS key, opens in the other mode to the same PKCS#8 key
        assert other.decrypt(pair.private_key_ciphertext_blob).plaintext == pair.private_key_plaintext
        assert pair.key_pair_spec == "ECC_NIST_P256" and pair.key_id == keys["arn"]
    assert {pair.kms_members().keys() == pairs["relay"].kms_members().keys() for pair in pairs.values()} == {True}


def test_shared_secrets_are_equal_in_both_modes(clients: dict[str, KmsClient], keys: dict[str, str]) -> None:
    peer = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    results = {mode: client.derive_shared_secret(keys["ecdh_arn"], peer) for mode, client in clients.items()}
    assert results["relay"].kms_members() == results["tunnel"].kms_members()
    assert len(results["tunnel"].shared_secret) == 32


def _kms_error(call: Callable[[], object]) -> tuple[str, bool]:
    with pytest.raises(KmsCallError) as caught:
        call()
    return caught.value.code, caught.value.retryable


def test_kms_errors_are_the_same_in_both_modes(clients: dict[str, KmsClient], keys: dict[str, str],
                                               kms: Any) -> None:
    blob = kms.client().encrypt(KeyId=keys["arn"], Plaintext=b"p", EncryptionContext={"a": "1"})["CiphertextBlob"]
    calls: list[Callable[[KmsClient], object]] = [
        lambda client: client.decrypt(blob, encryption_context={"a": "2"}),
        lambda client: client.generate_data_key("alias/none", number_of_bytes=8),
        lambda client: client.derive_shared_secret(keys["arn"], _p256_public()),
    ]
    for call in calls:
        errors = {mode: _kms_error(functools.partial(call, client)) for mode, client in clients.items()}
        assert errors["relay"] == errors["tunnel"], errors
        assert errors["tunnel"][0].endswith("Exception")


def _p256_public() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- what the tunnel parent sees ----------------------------------------------------------------------------


def test_the_tunnel_parent_sees_tls_records_only(kms: Any, parents: dict[str, NitrokitProcess],
                                                 keys: dict[str, str], tmp_path: Path) -> None:
    """A recording relay in front of the tunnel: neither the data key, nor the attestation document, nor the
    request's KeyId crosses it in the clear."""
    tunnel = parents["tunnel"]
    with RecordingRelay(f"unix://{tmp_path / 'spy.sock'}", tunnel.first_line) as spy:
        nsm = SimulatedNsm()
        with KmsClient(nsm=nsm, parent=str(spy.address), mode="tunnel", region=REGION, kms_host=KMS_HOST,
                       ca_file=kms.ca_file, credentials=tunnel.lines[1], retry=FAST_RETRY) as client:
            data_key = client.generate_data_key(keys["arn"], key_spec="AES_256")
        seen = bytes(spy.upstream) + bytes(spy.downstream)
    assert len(spy.upstream) > 1000 and len(spy.downstream) > 1000
    for secret in (data_key.plaintext, data_key.plaintext.hex().encode(), base64.b64encode(data_key.plaintext)):
        assert secret not in seen
    for clear in (keys["arn"].encode(), b"TrentService", b"AWS4-HMAC-SHA256", b"AttestationDocument"):
        assert clear not in seen
    assert seen[:1] == b"\x16"  # a TLS handshake record opens the stream


# --- restarts --------------------------------------------------------------------------------------------------


def test_the_tunnel_survives_the_parent_restarting(kms: Any, keys: dict[str, str], tmp_path: Path) -> None:
    first = _tunnel_parent(kms, tmp_path)
    first.start()
    try:
        client = _client(kms, first, "tunnel")
        before = client.generate_data_key(keys["arn"], number_of_bytes=16)
    finally:
        assert first.stop() == 0, first.stderr_text()
    second = _tunnel_parent(kms, tmp_path)  # same socket paths: what the enclave reaches is the same
    second.start()
    try:
        after = client.generate_data_key(keys["arn"], number_of_bytes=16)
        assert client.decrypt(before.ciphertext_blob).plaintext == before.plaintext
        assert len(after.plaintext) == 16
        client.close()
    finally:
        assert second.stop() == 0, second.stderr_text()
    assert "bytes" in first.stderr_text()  # one log line per tunnel, at its end


def test_a_stopped_tunnel_parent_is_a_typed_retryable_failure(kms: Any, tmp_path: Path) -> None:
    parent = _tunnel_parent(kms, tmp_path)
    parent.start()
    client = _client(kms, parent, "tunnel")
    assert len(client.generate_random(8)) == 8
    assert parent.stop() == 0
    code, retryable = _kms_error(lambda: client.generate_random(8))
    assert retryable and code != "TlsError"
    client.close()


# --- the command line ----------------------------------------------------------------------------------------


def test_the_enclave_cli_in_tunnel_mode(kms: Any, parents: dict[str, NitrokitProcess]) -> None:
    tunnel = parents["tunnel"]
    result = run_cli("enclave", "generate-random", "--bytes", "24", "--parent", tunnel.first_line, "--mode",
                     "tunnel", "--region", REGION, "--kms-host", KMS_HOST, "--ca-file", str(kms.ca_file),
                     "--credentials", tunnel.lines[1], "--nsm", "simulated", "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert len(base64.b64decode(json.loads(result.stdout)["Plaintext"])) == 24


def test_the_enclave_cli_names_a_missing_region() -> None:
    env = {key: value for key, value in os.environ.items() if key not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    result = subprocess.run([sys.executable, "-m", "nitrokit", "enclave", "generate-random", "--bytes", "8", "--mode",
                             "tunnel", "--nsm", "simulated"], capture_output=True, env=env, timeout=60, check=False)
    assert result.returncode == 2
    assert b"--region R (or AWS_REGION / AWS_DEFAULT_REGION)" in result.stderr and b"Traceback" not in result.stderr
