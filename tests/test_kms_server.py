"""The HTTP side of the simulated KMS: raw requests with http.client and sockets, limits, concurrency, faults,
logging, and stopping cleanly."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from nitrokit.cms import decrypt
from nitrokit.errors import UsageError
from nitrokit.kms import Faults, KmsSimConfig, SimulatedKms
from tests.test_kms_support import CONTENT_TYPE, good_document, post, recipient, rsa_key, sign_headers

BODY = b'{"NumberOfBytes": 16}'
ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedKms]:
    with SimulatedKms() as simulator:
        yield simulator


def raw_exchange(sim: SimulatedKms, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send raw bytes, read until the server closes or one full answer has arrived."""
    with socket.create_connection(sim.address, timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            match = re.search(rb"(?i)content-length: *([0-9]+)", head)
            if sep and match and len(body) >= int(match.group(1)):
                return data


def parse_raw(data: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body)


# --- protocol checks --------------------------------------------------------------------------------------

def test_answer_headers(sim: SimulatedKms) -> None:
    status, headers, body = post(sim, BODY, sign_headers(sim.url, BODY))
    assert status == 200
    assert headers["content-type"] == CONTENT_TYPE
    assert UUID.fullmatch(headers["x-amzn-requestid"])
    assert len(base64.b64decode(body["Plaintext"], validate=True)) == 16


@pytest.mark.parametrize(("content_type", "target", "code"), [
    ("application/json", "TrentService.GenerateRandom", "UnknownOperationException"),
    ("text/plain", "TrentService.GenerateRandom", "UnknownOperationException"),
    (CONTENT_TYPE, "TrentService.NoSuchOperation", "UnknownOperationException"),
    (CONTENT_TYPE, "DynamoDB_20120810.ListTables", "UnknownOperationException"),
    (CONTENT_TYPE, "", "UnknownOperationException"),
    (CONTENT_TYPE, "TrentService.Sign", "UnsupportedOperationException"),
    (CONTENT_TYPE, "TrentService.ReEncrypt", "UnsupportedOperationException"),
])
def test_routing(sim: SimulatedKms, content_type: str, target: str, code: str) -> None:
    headers = sign_headers(sim.url, BODY, target=target, content_type=content_type)
    status, response_headers, body = post(sim, BODY, headers)
    assert (status, body["__type"]) == (400, code)
    assert UUID.fullmatch(response_headers["x-amzn-requestid"])


def test_unknown_target_seen_by_botocore(sim: SimulatedKms) -> None:
    """What botocore reports for an unknown X-Amz-Target: UnknownOperationException, HTTP 400."""
    client = sim.client(config=ONE_ATTEMPT)
    client.meta.events.register("before-call.kms.GenerateRandom",
                                lambda params, **_: params["headers"].__setitem__("X-Amz-Target", "TrentService.Nope"))
    with pytest.raises(ClientError) as caught:
        client.generate_random(NumberOfBytes=8)
    assert caught.value.response["Error"]["Code"] == "UnknownOperationException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_unknown_target_is_refused_before_authentication(sim: SimulatedKms) -> None:
    status, _, body = post(sim, BODY, {"Content-Type": CONTENT_TYPE, "X-Amz-Target": "TrentService.Nope"})
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, _, body = post(sim, BODY, {"Content-Type": CONTENT_TYPE, "X-Amz-Target": "TrentService.GenerateRandom"})
    assert (status, body["__type"]) == (400, "MissingAuthenticationTokenException")


@pytest.mark.parametrize("body", [
    b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe", b'{"NumberOfBytes": NaN}', b'{"NumberOfBytes": 1e999}',
    b'{"NumberOfBytes": 8, "Recipient": "document"}',
    b'{"NumberOfBytes": 8, "Recipient": {"AttestationDocument": 7, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}',
    b'{"NumberOfBytes": 8, "Recipient": {"AttestationDocument": "not base64!", '
    b'"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}',
    b'{"NumberOfBytes": 8, "Recipient": {"AttestationDocument": "AAAA", "KeyEncryptionAlgorithm": 1}}',
    b"[" * 100000 + b"]" * 100000,
    b'{"NumberOfBytes": 8, "NumberOfBytes": 1024}',  # json.loads kept the last one; strict JSON refuses both
], ids=["broken", "array", "string", "not-utf8", "nan", "huge-float", "string-recipient", "int-document",
        "bad-base64", "int-algorithm", "deep-nesting", "duplicate-key"])
def test_bad_json(sim: SimulatedKms, body: bytes) -> None:
    status, headers, answer = post(sim, body, sign_headers(sim.url, body))
    assert (status, answer["__type"]) == (400, "SerializationException")
    assert headers["x-amzn-requestid"]


def test_empty_body_is_an_empty_request(sim: SimulatedKms) -> None:
    status, _, answer = post(sim, b"", sign_headers(sim.url, b""))
    assert (status, answer["__type"]) == (400, "ValidationException")
    assert "'numberOfBytes'" in answer["message"]


def test_unknown_members_are_ignored(sim: SimulatedKms) -> None:
    body = b'{"NumberOfBytes": 4, "GrantTokens": ["x"], "Extra": {"a": 1}}'
    status, _, answer = post(sim, body, sign_headers(sim.url, body))
    assert status == 200
    assert len(base64.b64decode(answer["Plaintext"])) == 4


def test_oversized_body_refused_before_reading(sim: SimulatedKms) -> None:
    request = (f"POST / HTTP/1.1\r\nHost: {sim.url[7:]}\r\nContent-Type: {CONTENT_TYPE}\r\n"
               f"X-Amz-Target: TrentService.GenerateRandom\r\nContent-Length: 10000000\r\n\r\n").encode()
    status, headers, body = parse_raw(raw_exchange(sim, request))
    assert (status, body["__type"]) == (413, "RequestEntityTooLargeException")
    assert headers["connection"] == "close"
    assert UUID.fullmatch(headers["x-amzn-requestid"])


def test_oversized_body_through_http_client(sim: SimulatedKms) -> None:
    body = b'{"NumberOfBytes": 8, "Pad": "' + b"a" * (600 * 1024) + b'"}'
    host, port = sim.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("POST", "/", body=body, headers=sign_headers(sim.url, body))
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["__type"] == "RequestEntityTooLargeException"
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close while the client is still sending: also a refusal
    finally:
        conn.close()


@pytest.mark.parametrize(("extra_headers", "status", "code"), [
    ("Transfer-Encoding: chunked\r\n", 411, "LengthRequiredException"),
    ("", 411, "LengthRequiredException"),
    ("Content-Length: -1\r\n", 400, "SerializationException"),
    ("Content-Length: 12abc\r\n", 400, "SerializationException"),
    ("Content-Length: 5\r\nContent-Length: 6\r\n", 400, "SerializationException"),
], ids=["chunked", "no-length", "negative", "not-a-number", "two-lengths"])
def test_body_framing(sim: SimulatedKms, extra_headers: str, status: int, code: str) -> None:
    request = (f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: {CONTENT_TYPE}\r\n"
               f"X-Amz-Target: TrentService.GenerateRandom\r\n{extra_headers}\r\n").encode()
    got_status, headers, body = parse_raw(raw_exchange(sim, request))
    assert (got_status, body["__type"]) == (status, code)
    assert headers["connection"] == "close"


@pytest.mark.parametrize("request_line", [b"GET / HTTP/1.1", b"POST /other HTTP/1.1", b"PUT / HTTP/1.1"])
def test_other_methods_and_paths(sim: SimulatedKms, request_line: bytes) -> None:
    status, headers, body = parse_raw(raw_exchange(sim, request_line + b"\r\nHost: x\r\nContent-Length: 0\r\n\r\n"))
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    assert headers["x-amzn-requestid"]


@pytest.mark.parametrize("raw_request", [
    b"NONSENSE\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
    b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n",
], ids=["bad-request-line", "header-too-long", "unknown-method"])
def test_malformed_http_gets_json_with_request_id(sim: SimulatedKms, raw_request: bytes) -> None:
    status, headers, body = parse_raw(raw_exchange(sim, raw_request))
    assert 400 <= status < 600
    assert body["__type"]
    assert UUID.fullmatch(headers["x-amzn-requestid"])


def test_keep_alive_serves_many_requests_on_one_connection(sim: SimulatedKms) -> None:
    host, port = sim.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        ids = set()
        for body in (BODY, b"{broken", BODY):  # an error answer does not end the connection
            conn.request("POST", "/", body=body, headers=sign_headers(sim.url, body))
            response = conn.getresponse()
            response.read()
            assert response.getheader("Connection") != "close"
            ids.add(response.getheader("x-amzn-RequestId"))
        assert len(ids) == 3
        sock = conn.sock
        assert sock is not None  # still the first socket: http.client would have reconnected otherwise
    finally:
        conn.close()


# --- limits: connections, slow clients ---------------------------------------------------------------------

def test_connection_limit_answers_503_then_recovers() -> None:
    with SimulatedKms(max_connections=2) as simulator:
        held = [socket.create_connection(simulator.address, timeout=10) for _ in range(2)]
        try:
            deadline = time.monotonic() + 10
            while True:  # the two held connections are accepted asynchronously
                status, headers, body = parse_raw(raw_exchange(simulator, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
                if status == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert (status, body["__type"]) == (503, "ServiceUnavailableException")
            assert headers["x-amzn-requestid"]
        finally:
            for sock in held:
                sock.close()
        client = simulator.client()  # standard retries ride over any 503 while the slots free up
        assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8


def test_slow_client_is_dropped_without_blocking_others() -> None:
    with SimulatedKms(socket_timeout=0.5) as simulator:
        stalled_headers = socket.create_connection(simulator.address, timeout=10)
        stalled_body = socket.create_connection(simulator.address, timeout=10)
        try:
            stalled_headers.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
            stalled_body.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Numb")
            assert len(simulator.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8
            assert stalled_headers.recv(1024) == b""  # closed by the server after its socket timeout
            assert stalled_body.recv(1024) == b""
        finally:
            stalled_headers.close()
            stalled_body.close()


@pytest.mark.parametrize(("prefix", "drip"), [
    (b"", b"POST /" + b"a" * 200),
    (b"POST / HTTP/1.1\r\n", b"X-Never-Ending: " + b"a" * 200),
    (b"POST / HTTP/1.1\r\nContent-Length: 300\r\n\r\n", b"{" + b" " * 200),
], ids=["request-line", "headers", "body"])
def test_a_client_dripping_bytes_is_cut_off_by_the_request_deadline(prefix: bytes, drip: bytes) -> None:
    """One byte at a time, each well within the socket timeout: the per-read timeout never trips, the one
    deadline over the whole request (request line, headers and body) does (issue 12, item 16)."""
    with SimulatedKms(socket_timeout=5.0, request_deadline=0.3) as simulator:
        with socket.create_connection(simulator.address, timeout=10) as sock:
            sock.sendall(prefix)
            answer = None
            for byte in drip:  # 0.05 s or more apart: 200 bytes take over 10 s, the deadline is 0.3 s
                try:
                    sock.sendall(bytes([byte]))
                except OSError:  # the server closed while we were still sending
                    answer = b""
                    break
                readable, _, _ = select.select([sock], [], [], 0.05)
                if readable:
                    answer = raw_answer(sock)
                    break
            assert answer is not None, "the server kept reading a request dripped over far more than its deadline"
        assert answer == b"" or parse_raw(answer)[0] == 408
        if answer:
            _status, headers, body = parse_raw(answer)
            assert body["__type"] == "RequestTimeoutException" and headers["connection"] == "close"
        # The slot is free again: a normal client is served.
        assert len(simulator.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8


def raw_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (an answer with Connection: close)."""
    data = b""
    with contextlib.suppress(ConnectionError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_stop_closes_idle_keep_alive_connections() -> None:
    simulator = SimulatedKms().start()
    host, port = simulator.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/", body=BODY, headers=sign_headers(simulator.url, BODY))
    conn.getresponse().read()
    simulator.stop()
    simulator.stop()  # idempotent
    assert not simulator.running
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        conn.request("POST", "/", body=BODY, headers=sign_headers(f"http://{host}:{port}", BODY))
        conn.getresponse()
    conn.close()


def test_an_answer_cut_by_stop_is_whole_or_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    # stop() shuts connections down at any moment. Cut one right after the server's first write of an answer:
    # the client must have the whole answer (head and body together), never a head whose body is missing,
    # which botocore would parse as an empty 200 success.
    from nitrokit.kms import server as server_module

    original_setup = server_module._Handler.setup

    class CutAfterFirstWrite:
        def __init__(self, inner: Any, connection: socket.socket) -> None:
            self._inner, self._connection = inner, connection

        def write(self, data: bytes) -> int:
            written = self._inner.write(data)
            self._connection.shutdown(socket.SHUT_RDWR)
            return int(written)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    def setup(handler: Any) -> None:
        original_setup(handler)
        handler.wfile = CutAfterFirstWrite(handler.wfile, handler.connection)

    monkeypatch.setattr(server_module._Handler, "setup", setup)
    with SimulatedKms() as simulator:
        # http.client raises IncompleteRead for a head without its body.
        status, _, answer = post(simulator, BODY, sign_headers(simulator.url, BODY))
    assert status == 200 and len(base64.b64decode(answer["Plaintext"])) == 16


def test_api_misuse() -> None:
    with pytest.raises(UsageError):
        SimulatedKms(port=70000)
    with pytest.raises(UsageError):
        SimulatedKms(config="fixture")  # type: ignore[arg-type]
    simulator = SimulatedKms()
    with pytest.raises(UsageError):
        _ = simulator.url
    with simulator, pytest.raises(UsageError):
        simulator.start()
    assert "stopped" in repr(simulator)


# --- concurrency -------------------------------------------------------------------------------------------

def test_32_concurrent_clients(sim: SimulatedKms) -> None:
    clients = [sim.client() for _ in range(32)]
    document = good_document()
    barrier = threading.Barrier(32)
    failures: list[BaseException] = []
    results: list[int] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            for round_ in range(6):
                count = 1 + (index * 7 + round_) % 64
                if (index + round_) % 2:
                    envelope = clients[index].generate_random(NumberOfBytes=count, Recipient=recipient(document))
                    got = len(decrypt(envelope["CiphertextForRecipient"], rsa_key()))
                else:
                    got = len(clients[index].generate_random(NumberOfBytes=count)["Plaintext"])
                assert got == count
                with lock:
                    results.append(got)
        except BaseException as exc:  # collected and re-raised in the test thread
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures[0]
    assert len(results) == 32 * 6


# --- faults ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error", ["KMSInternalException", "DependencyTimeoutException"])
def test_fail_next_seen_without_retries(error: str) -> None:
    with SimulatedKms() as simulator:
        simulator.fail_next(1, error=error)
        client = simulator.client(config=ONE_ATTEMPT)
        with pytest.raises(ClientError) as caught:
            client.generate_random(NumberOfBytes=8)
        assert caught.value.response["Error"]["Code"] == error
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        assert len(client.generate_random(NumberOfBytes=8)["Plaintext"]) == 8  # only the next one failed


def test_standard_retries_ride_over_transient_faults() -> None:
    with SimulatedKms() as simulator:
        simulator.fail_next(2, error="DependencyTimeoutException")
        response = simulator.client().generate_random(NumberOfBytes=8)  # 3 attempts: 2 failures then success
        assert len(response["Plaintext"]) == 8
        assert response["ResponseMetadata"]["RetryAttempts"] == 2
        assert simulator.outcomes() == {"DependencyTimeoutException": 2, "ok": 1}


def test_fault_rates_from_config_are_reproducible() -> None:
    def run() -> list[str]:
        config = KmsSimConfig(faults=Faults(internal_error_rate=0.3, dependency_timeout_rate=0.2, seed=7))
        outcomes = []
        with SimulatedKms(config) as simulator:
            client = simulator.client(config=ONE_ATTEMPT)
            for _ in range(40):
                try:
                    client.generate_random(NumberOfBytes=4)
                    outcomes.append("ok")
                except ClientError as exc:
                    outcomes.append(exc.response["Error"]["Code"])
        return outcomes

    first = run()
    assert first == run()
    assert set(first) == {"ok", "KMSInternalException", "DependencyTimeoutException"}


def test_faults_come_after_authentication() -> None:
    with SimulatedKms(KmsSimConfig(faults=Faults(internal_error_rate=1.0))) as simulator:
        status, _, body = post(simulator, BODY, {"Content-Type": CONTENT_TYPE,
                                                 "X-Amz-Target": "TrentService.GenerateRandom"})
        assert (status, body["__type"]) == (400, "MissingAuthenticationTokenException")
        status, _, body = post(simulator, BODY, sign_headers(simulator.url, BODY))
        assert (status, body["__type"]) == (500, "KMSInternalException")
        simulator.set_faults(Faults())
        assert post(simulator, BODY, sign_headers(simulator.url, BODY))[0] == 200


def test_added_latency(caplog: pytest.LogCaptureFixture) -> None:
    with SimulatedKms(KmsSimConfig(faults=Faults(latency_ms=60))) as simulator, \
            caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"):
        simulator.client().generate_random(NumberOfBytes=8)
    milliseconds = float(re.search(r"ms=([0-9.]+)", caplog.records[-1].getMessage()).group(1))  # type: ignore[union-attr]
    assert milliseconds >= 60  # a lower bound the sleep guarantees, not a speed measurement


def test_runtime_hooks_validate() -> None:
    with SimulatedKms() as simulator:
        with pytest.raises(UsageError):
            simulator.fail_next(-1)
        with pytest.raises(UsageError):
            simulator.fail_next(1, error="ThrottlingException")
        with pytest.raises(UsageError):
            simulator.set_faults({"latency_ms": 5})  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            simulator.set_conditions({"kms:RecipientAttestation:PCR0": "00"})  # type: ignore[arg-type]


# --- logging -----------------------------------------------------------------------------------------------

def test_one_log_line_per_request_without_secrets(sim: SimulatedKms, caplog: pytest.LogCaptureFixture) -> None:
    client = sim.client()
    with caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"):
        plain = client.generate_random(NumberOfBytes=32)
        wrapped = client.generate_random(NumberOfBytes=32, Recipient=recipient(good_document()))
        with pytest.raises(ClientError):
            client.generate_random(NumberOfBytes=32, Recipient=recipient(b"junk"))
    records = [record for record in caplog.records if record.name == "nitrokit.kms_sim"]
    assert len(records) == 3
    text = "\n".join(record.getMessage() for record in records)
    for response in (plain, wrapped):
        assert f"request_id={response['ResponseMetadata']['RequestId']} operation=GenerateRandom outcome=ok " \
               "status=200 ms=" in text
    assert "outcome=ValidationException status=400" in text
    secret = plain["Plaintext"]
    for form in (secret.hex(), base64.b64encode(secret).decode(), "wJalrXUtnFEMI"):
        assert form not in text
    assert base64.b64encode(wrapped["CiphertextForRecipient"][:48]).decode() not in text


def test_a_bug_in_the_simulator_is_a_500_with_a_log_line(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from nitrokit.kms import _generate_random

    def broken(*_: Any) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(_generate_random, "generate_random", broken)
    with SimulatedKms() as simulator, caplog.at_level(logging.INFO, logger="nitrokit.kms_sim"):
        status, headers, body = post(simulator, BODY, sign_headers(simulator.url, BODY))
        assert (status, body["__type"]) == (500, "KMSInternalException")
        assert f"request_id={headers['x-amzn-requestid']}" in caplog.text
        assert post(simulator, BODY, sign_headers(simulator.url, BODY))[0] == 500  # and it keeps serving
