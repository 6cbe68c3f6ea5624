"""The mission end to end: simulated KMS <- boto3 <- parent (a real process) <- enclave client.

Real sockets throughout (Unix and TCP), the parent as a separate ``nitrokit parent`` process, and a
byte-recording relay on both of the parent's legs to show it never handles the random bytes.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from nitrokit import cms
from nitrokit.enclave.errors import KmsCallError, UntrustedAnswerError
from nitrokit.enclave.kms_client import IdentityPolicy, KmsClient, RetryPolicy
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.kms import AttestationConditions, SimulatedKms
from nitrokit.testing.processes import NitrokitProcess, simulator_environment
from nitrokit.wire.address import bound_address, listen, parse_address
from nitrokit.wire.client import WireClient
from nitrokit.wire.errors import ErrorCode, RemoteError
from nitrokit.wire.framing import recv_frame, send_frame
from nitrokit.wire.kms import generate_random_request
from nitrokit.wire.messages import ErrorInfo, Response, decode_request, encode_response
from tests.cli_helpers import run_cli
from tests.relay import RecordingRelay

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="module")
def kms() -> Iterator[SimulatedKms]:
    with SimulatedKms() as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _reset_kms(kms: SimulatedKms) -> Iterator[None]:
    yield
    kms.set_conditions(None, recipient_required=False)
    kms.fail_next(0)


def _start_parent(listen_at: str, kms_url: str, *extra: str) -> NitrokitProcess:
    process = NitrokitProcess("parent", "--listen", listen_at, "--endpoint-url", kms_url, "--region", "us-east-1",
                              "--kms-max-attempts", "1", *extra, env=simulator_environment())
    process.start()
    return process


@pytest.fixture(scope="module", params=["unix", "tcp"])
def parent(request: pytest.FixtureRequest, kms: SimulatedKms,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    listen_at = (f"unix://{tmp_path_factory.mktemp('parent') / 'parent.sock'}" if request.param == "unix"
                 else "tcp://127.0.0.1:0")
    process = _start_parent(listen_at, kms.url)
    try:
        yield process.first_line
    finally:
        assert process.stop() == 0, process.stderr_text()


def _client(parent: str, **options: Any) -> KmsClient:
    return KmsClient(nsm=SimulatedNsm(), parent=parent, retry=FAST_RETRY, **options)


def test_random_bytes_through_the_parent(parent: str) -> None:
    with _client(parent) as client:
        values = [client.generate_random(n) for n in (1, 32, 1024)]
    assert [len(v) for v in values] == [1, 32, 1024]


def test_each_call_gives_distinct_bytes(parent: str) -> None:
    with _client(parent) as client:
        values = {client.generate_random(32) for _ in range(20)}
    assert len(values) == 20


def test_the_identity_is_replaced_after_its_uses(parent: str) -> None:
    documents: list[int] = []
    with _client(parent, identity=IdentityPolicy(max_uses=2), trace=lambda m: documents.append(1)
                 if m.startswith("new identity") else None) as client:
        for _ in range(5):
            client.generate_random(8)
    assert len(documents) == 3


def test_many_enclaves_at_once(parent: str) -> None:
    def one_enclave(_: int) -> list[bytes]:
        with _client(parent) as client:
            return [client.generate_random(16) for _ in range(5)]

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = [value for values in pool.map(one_enclave, range(12)) for value in values]
    assert len(results) == 60 and len(set(results)) == 60


def test_a_request_without_recipient_is_refused_by_the_parent(parent: str, kms: SimulatedKms) -> None:
    before = kms.outcomes()
    with WireClient(parent) as wire, pytest.raises(RemoteError) as info:
        wire.call("GenerateRandom", generate_random_request(16))
    assert info.value.code == ErrorCode.RECIPIENT_REQUIRED and not info.value.retryable
    assert kms.outcomes() == before  # KMS was never asked


def test_transient_kms_faults_are_retried(parent: str, kms: SimulatedKms) -> None:
    kms.fail_next(2, error="KMSInternalException")
    seen: list[str] = []
    with _client(parent, trace=seen.append) as client:
        assert len(client.generate_random(8)) == 8
    assert sum("retryable failure KMSInternalException" in line for line in seen) == 2


def test_persistent_kms_faults_surface_as_a_typed_error(parent: str, kms: SimulatedKms) -> None:
    kms.fail_next(10, error="DependencyTimeoutException")
    with _client(parent) as client, pytest.raises(KmsCallError) as info:
        client.generate_random(8)
    assert info.value.code == "DependencyTimeoutException"
    assert info.value.retryable and info.value.attempts == 4


def test_a_policy_denial_is_not_retried(parent: str, kms: SimulatedKms) -> None:
    kms.set_conditions(AttestationConditions.require(pcrs={0: "ab" * 48}))
    with _client(parent) as client, pytest.raises(KmsCallError) as info:
        client.generate_random(8)
    assert info.value.code == "AccessDeniedException"
    assert not info.value.retryable and info.value.attempts == 1


def test_a_policy_bound_to_the_enclave_allows_it(parent: str, kms: SimulatedKms) -> None:
    pcr0 = SimulatedNsm().describe_pcr(0).data
    kms.set_conditions(AttestationConditions.require(image_sha384=pcr0.hex().upper()), recipient_required=True)
    with _client(parent) as client:
        assert len(client.generate_random(8)) == 8


def test_the_parent_never_sees_the_random_bytes(kms: SimulatedKms, tmp_path: Path) -> None:
    with RecordingRelay("tcp://127.0.0.1:0", kms.url.replace("http://", "tcp://")) as kms_leg:
        kms_via_relay = str(kms_leg.address).replace("tcp://", "http://")
        process = _start_parent(f"unix://{tmp_path / 'parent.sock'}", kms_via_relay)
        try:
            with RecordingRelay(f"unix://{tmp_path / 'relay.sock'}", process.first_line) as enclave_leg, \
                    _client(str(enclave_leg.address)) as client:
                values = [client.generate_random(n) for n in (16, 32, 64)]
            traffic = kms_leg.recorded() + enclave_leg.recorded()
        finally:
            process.stop()
    assert b"CiphertextForRecipient" in traffic and b"AttestationDocument" in traffic
    assert b'"Plaintext"' not in traffic
    for value in values:
        for form in (value, value.hex().encode(), base64.b64encode(value), base64.b64encode(value[:12])):
            assert form not in traffic
    assert value not in process.stderr_text().encode()


# --- a hostile parent -------------------------------------------------------------------------------------

class ForgingParent:
    """Speaks the wire protocol, but answers every request with what ``forge(request_json)`` returns."""

    def __init__(self, tmp_path: Path, forge: Callable[[dict[str, Any]], Response]) -> None:
        self._requested = parse_address(f"unix://{tmp_path / 'forger.sock'}")
        self._server = listen(self._requested)
        self._server.setblocking(True)
        self.address = str(bound_address(self._server, self._requested))
        self._forge = forge
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            with connection:
                try:
                    while True:
                        request = decode_request(recv_frame(connection, timeout=5))
                        answer = self._forge(dict(request.request))
                        send_frame(connection, encode_response(Response(id=request.id, response=answer.response,
                                                                        error=answer.error)), timeout=5)
                except Exception:  # the client hung up
                    pass

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()


def _document_key(request: dict[str, Any]) -> bytes:
    from nitrokit.attestation import parse_document

    document = base64.b64decode(request["Recipient"]["AttestationDocument"])
    key = parse_document(document).public_key
    assert key is not None
    return key


def _envelope(plaintext: bytes, public_key: bytes) -> str:
    return base64.b64encode(cms.encrypt_for_recipient(plaintext, public_key)).decode()


FORGERIES: dict[str, tuple[Callable[[dict[str, Any]], Response], str]] = {
    "plaintext": (lambda r: Response(id=None, response={"Plaintext": base64.b64encode(b"\x00" * 8).decode()}),
                  "carries Plaintext"),
    "both": (lambda r: Response(id=None, response={"Plaintext": base64.b64encode(b"\x00" * 8).decode(),
                                                   "CiphertextForRecipient": _envelope(b"\x00" * 8, _document_key(r))}),
             "carries Plaintext"),
    "nothing": (lambda r: Response(id=None, response={}), "no CiphertextForRecipient"),
    "wrong length": (lambda r: Response(id=None, response={"CiphertextForRecipient":
                                                           _envelope(b"\x00" * 7, _document_key(r))}),
                     "holds 7 bytes"),
    "garbage envelope": (lambda r: Response(id=None, response={"CiphertextForRecipient":
                                                               base64.b64encode(b"\x30\x80garbage").decode()}),
                         "cannot be opened"),
}


@pytest.mark.parametrize("name", FORGERIES)
def test_forged_answers_are_refused(name: str, tmp_path: Path) -> None:
    forge, message = FORGERIES[name]
    forger = ForgingParent(tmp_path, forge)
    try:
        with _client(forger.address) as client, pytest.raises(UntrustedAnswerError, match=message):
            client.generate_random(8)
    finally:
        forger.close()


def test_an_envelope_for_another_key_is_refused(tmp_path: Path) -> None:
    from nitrokit.enclave.keys import EphemeralKeyPair

    other = EphemeralKeyPair.generate()
    forger = ForgingParent(tmp_path, lambda r: Response(id=None, response={
        "CiphertextForRecipient": _envelope(b"\x00" * 8, other.public_key_der)}))
    try:
        with _client(forger.address) as client, pytest.raises(UntrustedAnswerError, match="another key"):
            client.generate_random(8)
    finally:
        forger.close()


def test_a_well_forged_envelope_is_why_nsm_mixing_exists(tmp_path: Path) -> None:
    """CMS is unauthenticated: a relaying parent can choose the bytes. Mixing in NSM entropy defeats that."""
    chosen = b"\x42" * 32
    forger = ForgingParent(tmp_path, lambda r: Response(id=None, response={
        "CiphertextForRecipient": _envelope(chosen, _document_key(r))}))
    try:
        with _client(forger.address, mix_nsm_entropy=False) as client:
            assert client.generate_random(32) == chosen  # accepted: nothing in CMS can tell
        with _client(forger.address) as client:  # mixing is the default (issue 12)
            mixed = {client.generate_random(32) for _ in range(3)}
        assert chosen not in mixed and len(mixed) == 3
    finally:
        forger.close()


def test_the_cli_mixes_by_default_and_opts_out_explicitly(tmp_path: Path) -> None:
    chosen = b"\x42" * 16
    forger = ForgingParent(tmp_path, lambda r: Response(id=None, response={
        "CiphertextForRecipient": _envelope(chosen, _document_key(r))}))
    command = ("enclave", "generate-random", "--nsm", "simulated", "--parent", forger.address, "--bytes", "16")
    try:
        default, opted_out = run_cli(*command), run_cli(*command, "--no-mix-nsm-entropy")
    finally:
        forger.close()
    assert default.returncode == 0 and opted_out.returncode == 0, default.stderr + opted_out.stderr
    assert opted_out.stdout.decode().strip() == chosen.hex()
    mixed = default.stdout.decode().strip()
    assert len(mixed) == 32 and mixed != chosen.hex()


def test_a_parent_error_answer_is_typed(tmp_path: Path) -> None:
    forger = ForgingParent(tmp_path, lambda r: Response(id=None, error=ErrorInfo(ErrorCode.BUSY, "too many", True)))
    try:
        with _client(forger.address) as client, pytest.raises(KmsCallError) as info:
            client.generate_random(8)
        assert info.value.code == ErrorCode.BUSY and info.value.attempts == 4
    finally:
        forger.close()


def test_no_parent_is_a_typed_error(tmp_path: Path) -> None:
    with _client(f"unix://{tmp_path / 'nobody.sock'}") as client, pytest.raises(KmsCallError) as info:
        client.generate_random(8)
    assert info.value.retryable and info.value.attempts == 4


def test_bad_sizes_are_usage_errors() -> None:
    from nitrokit.errors import UsageError

    client = KmsClient(nsm=SimulatedNsm(), parent="unix:///nonexistent")
    for bad in (0, 1025, -1, "8"):
        with pytest.raises(UsageError):
            client.generate_random(bad)  # type: ignore[arg-type]


# --- the command line -------------------------------------------------------------------------------------

def test_enclave_generate_random_command(parent: str) -> None:
    result = run_cli("enclave", "generate-random", "--bytes", "24", "--parent", parent, "--nsm", "simulated",
                     "--format", "base64")
    assert result.returncode == 0, result.stderr
    assert len(base64.b64decode(result.stdout)) == 24
    raw = run_cli("enclave", "generate-random", "--bytes", "5", "--parent", parent, "--nsm", "simulated",
                  "--format", "raw")
    assert raw.returncode == 0 and len(raw.stdout) == 5
    refused = run_cli("enclave", "generate-random", "--bytes", "5000", "--parent", parent, "--nsm", "simulated")
    assert refused.returncode == 2 and b"1 to 1024" in refused.stderr
    as_json = run_cli("enclave", "generate-random", "--bytes", "7", "--parent", parent, "--nsm", "simulated",
                      "--json")
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert set(answer) == {"Plaintext"} and len(base64.b64decode(answer["Plaintext"])) == 7


def test_demo_command() -> None:
    result = run_cli("demo", "--bytes", "48", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(base64.b64decode(report["random"])) == 48
    assert any("decrypted inside the enclave" in step for step in report["steps"])
    text = run_cli("demo")
    assert text.returncode == 0
    assert text.stdout.decode().splitlines()[-1].startswith("random (32 bytes): ")


def test_a_bad_envelope_retires_the_key_that_saw_it(tmp_path: Path) -> None:
    """One failed decryption per key at most: no padding oracle against earlier answers to the same key."""
    keys: list[bytes] = []

    def forge(request: dict[str, Any]) -> Response:
        keys.append(_document_key(request))
        return Response(id=None, response={"CiphertextForRecipient": base64.b64encode(b"\x30\x80bad").decode()})

    forger = ForgingParent(tmp_path, forge)
    try:
        with _client(forger.address) as client:
            for _ in range(3):
                with pytest.raises(UntrustedAnswerError):
                    client.generate_random(8)
        assert len(set(keys)) == 3
    finally:
        forger.close()


def test_parent_error_text_cannot_carry_terminal_escapes(tmp_path: Path) -> None:
    forger = ForgingParent(tmp_path, lambda r: Response(id=None, error=ErrorInfo(
        "Refused", "\x1b[2Jcleared\x07 screen", False)))
    try:
        with _client(forger.address) as client, pytest.raises(KmsCallError) as info:
            client.generate_random(8)
        assert "\x1b" not in str(info.value) and "\x07" not in str(info.value)
        assert "\\x1b[2Jcleared" in str(info.value)
    finally:
        forger.close()
