"""The parent proxy over real Unix and TCP sockets, relaying to a real KMS endpoint over HTTP with boto3.

The KMS endpoint is the simulated KMS (nitrokit.kms) where it can play the part, and a small stand-in HTTP
server (below) where a test needs KMS to misbehave in ways the simulator does not: throttling, odd bodies,
a forged Plaintext, an answer that never comes, or a call held open until the test releases it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nitrokit.cms import decrypt
from nitrokit.errors import UsageError
from nitrokit.kms import AttestationConditions, SimulatedKms
from nitrokit.kms_api import RETRYABLE_KMS_CODES
from nitrokit.parent._kms import error_for_exception
from nitrokit.parent.proxy import ParentProxy, ProxyConfig, ProxyThread
from nitrokit.testing.documents import build_document
from nitrokit.wire import (
    MAX_FRAME_SIZE,
    AsyncWireClient,
    ErrorCode,
    RemoteError,
    Request,
    Response,
    TransportError,
    WireClient,
    connect,
    decode_response,
    encode_frame,
    encode_request,
    generate_random_request,
    parse_address,
    parse_generate_random_response,
    recv_frame,
    send_frame,
)
from tests.conftest import REPO

# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def document(rsa_key) -> bytes:
    spki = rsa_key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return build_document(public_key=spki)


_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
                "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}


def _aws_environment(base: dict[str, str], tmp_path, *, credentials: bool = True) -> dict[str, str]:
    env = {key: value for key, value in base.items()
           if not key.startswith("AWS_") and key.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-creds"),
               AWS_EC2_METADATA_DISABLED="true", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    if credentials:
        env.update(_CREDENTIALS)
    return env


@pytest.fixture
def aws_env(monkeypatch, tmp_path) -> None:
    """The standard credential chain finds the simulator's key in the environment, and nothing else."""
    env = _aws_environment(dict(os.environ), tmp_path)
    for key in list(os.environ):
        if key not in env:
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def kms() -> Iterator[SimulatedKms]:
    with SimulatedKms() as simulator:
        yield simulator


@pytest.fixture(params=["unix", "tcp"])
def listen_address(request, tmp_path) -> str:
    return f"unix://{tmp_path}/parent.sock" if request.param == "unix" else "tcp://127.0.0.1:0"


@pytest.fixture
def start_proxy(aws_env, tmp_path) -> Iterator[Callable[..., ProxyThread]]:
    """Start a proxy in a thread with config overrides; stopped after the test."""
    running: list[ProxyThread] = []

    def start(endpoint_url: str, **overrides: Any) -> ProxyThread:
        options: dict[str, Any] = {"listen": f"unix://{tmp_path}/p{len(running)}.sock", "region": "us-east-1",
                                   "endpoint_url": endpoint_url, "kms_max_attempts": 1}
        options.update(overrides)
        proxy = ProxyThread(ProxyConfig(**options))
        proxy.start()
        running.append(proxy)
        return proxy

    yield start
    for proxy in running:
        proxy.stop(timeout=10)


class StandInKms:
    """A minimal KMS-shaped HTTP endpoint: answers every call with ``self.answer`` (status, JSON body).

    ``gate``: calls wait on it before answering (so a test can hold a call in flight); ``delay``: seconds to
    sleep first; ``received`` counts requests and is set on each one.
    """

    def __init__(self) -> None:
        self.answer: tuple[int, bytes] = (200, json.dumps(
            {"CiphertextForRecipient": base64.b64encode(b"\x30\x80stand-in-cms").decode()}).encode())
        self.gate: threading.Event | None = None
        self.delay = 0.0
        self.calls: list[dict[str, Any]] = []
        self.received = threading.Event()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                stand_in.calls.append({"target": self.headers.get("X-Amz-Target"), "body": json.loads(body)})
                stand_in.received.set()
                if stand_in.gate is not None:
                    stand_in.gate.wait(20)
                if stand_in.delay:
                    time.sleep(stand_in.delay)
                status, payload = stand_in.answer
                head = (f"HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\n"
                        f"x-amzn-RequestId: stand-in\r\nContent-Length: {len(payload)}\r\n\r\n")
                with contextlib.suppress(OSError):
                    self.wfile.write(head.encode() + payload)  # one write: no Nagle/delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


class DripKms:
    """A KMS-shaped endpoint on loopback that answers too slowly or too much, over a raw socket.

    ``mode``: ``"body"`` sends the headers at once, then the body one byte every ``interval`` seconds;
    ``"headers"`` drips the status line and headers themselves; ``"huge"`` declares and sends ``size`` bytes
    as fast as the parent takes them; ``"chunked"`` sends as much without declaring a length (chunked
    transfer encoding), so only counting what is read can stop it. ``closed`` is set when the parent has
    closed (or shut down) a connection; ``sent`` counts body bytes written.
    """

    def __init__(self, mode: str, *, interval: float = 0.2, size: int = 100 * 1024 * 1024) -> None:
        self.mode, self.interval, self.size = mode, interval, size
        self.closed = threading.Event()
        self.received = threading.Event()
        self.sent = 0
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def close(self) -> None:
        self._stop.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            try:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += connection.recv(65536)
                self.received.set()
                declared = self.size if self.mode == "huge" else 200
                framing = ("Transfer-Encoding: chunked" if self.mode == "chunked"
                           else f"Content-Length: {declared}")
                headers = (f"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
                           f"x-amzn-RequestId: drip\r\n{framing}\r\n\r\n").encode()
                if self.mode == "headers":
                    for byte in headers:
                        if self._stop.wait(self.interval):
                            return
                        connection.sendall(bytes([byte]))
                    return
                connection.sendall(headers)
                if self.mode in ("huge", "chunked"):
                    block = b"A" * 65536
                    if self.mode == "chunked":
                        block = b"%x\r\n%s\r\n" % (len(block), block)
                    while self.sent < self.size and not self._stop.is_set():
                        connection.sendall(block)
                        self.sent += len(block)
                    return
                while not self._stop.wait(self.interval):
                    connection.sendall(b" ")  # JSON whitespace: a valid start of an answer that never ends
                    self.sent += 1
            except (OSError, StopIteration, ValueError):
                pass
            finally:
                self.closed.set()


@pytest.fixture
def stand_in() -> Iterator[StandInKms]:
    server = StandInKms()
    yield server
    server.close()


def _recipient_request(document: bytes, number_of_bytes: int = 32) -> dict[str, Any]:
    return generate_random_request(number_of_bytes, attestation_document=document)


def _raw_exchange(sock: socket.socket, body: bytes) -> Response:
    send_frame(sock, body, timeout=5)
    return decode_response(recv_frame(sock, timeout=10))


def _expect_error_then_close(sock: socket.socket, code: str, *, timeout: float = 10) -> Response:
    response = decode_response(recv_frame(sock, timeout=timeout))
    assert response.error is not None and response.error.code == code, response
    sock.settimeout(timeout)
    assert sock.recv(1) == b""  # then a clean close
    return response


# -- the main path ----------------------------------------------------------------------------------------------


def test_generate_random_through_the_parent(aws_env, kms, listen_address, rsa_key, document, caplog):
    caplog.set_level(logging.INFO, logger="nitrokit.parent")
    config = ProxyConfig(listen=listen_address, region="us-east-1", endpoint_url=kms.url)
    with ProxyThread(config) as proxy:
        address = proxy.address
        if listen_address.startswith("tcp"):
            assert address.port != 0  # type: ignore[union-attr]
        seen = set()
        with WireClient(address, timeout=30) as client:
            for size in (1, 32, 1024):
                answer = client.call("GenerateRandom", _recipient_request(document, size))
                assert set(answer) == {"CiphertextForRecipient"}
                result = parse_generate_random_response(answer)
                assert result.plaintext is None and result.ciphertext_for_recipient is not None
                random = decrypt(result.ciphertext_for_recipient, rsa_key)
                assert len(random) == size
                seen.add(random)
    assert len(seen) == 3
    assert kms.outcomes() == {"ok": 3}
    calls = [r.getMessage() for r in caplog.records if r.getMessage().startswith("call ")]
    assert len(calls) == 3
    assert all("op=GenerateRandom" in line and "outcome=ok" in line and " ms=" in line for line in calls)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert base64.b64encode(document)[:40].decode() not in logged
    assert not any(random.hex()[:16] in logged or base64.b64encode(random).decode()[:12] in logged
                   for random in seen if len(random) >= 8)
    if listen_address.startswith("unix"):
        assert not os.path.exists(parse_address(listen_address).sockaddr)  # type: ignore[arg-type]


def test_request_without_recipient_is_refused_by_default(kms, start_proxy):
    proxy = start_proxy(kms.url)
    with pytest.raises(RemoteError) as info:
        WireClient(proxy.address).call("GenerateRandom", generate_random_request(16))
    assert info.value.code == ErrorCode.RECIPIENT_REQUIRED and not info.value.retryable
    assert kms.outcomes() == {}  # KMS was never asked


def test_allow_plaintext_relays_requests_without_recipient(kms, start_proxy):
    proxy = start_proxy(kms.url, allow_plaintext=True)
    result = parse_generate_random_response(WireClient(proxy.address).call("GenerateRandom",
                                                                            generate_random_request(16)))
    assert result.plaintext is not None and len(result.plaintext) == 16


def test_invalid_requests_are_refused_before_kms_and_the_connection_stays_usable(kms, start_proxy, document):
    proxy = start_proxy(kms.url)
    with connect(proxy.address, timeout=5) as sock:
        for bad in ({"NumberOfBytes": 0}, {"NumberOfBytes": "32"}, {},
                    {"NumberOfBytes": 8, "Recipient": {"AttestationDocument": "!!", "KeyEncryptionAlgorithm": "X"}},
                    {"NumberOfBytes": 8, "KeyId": "alias/mine"}):
            request = Request(operation="GenerateRandom", request=bad)
            response = _raw_exchange(sock, encode_request(request))
            assert response.id == request.id
            assert response.error is not None and response.error.code == ErrorCode.INVALID_REQUEST
            assert not response.error.retryable
        good = Request(operation="GenerateRandom", request=_recipient_request(document))
        response = _raw_exchange(sock, encode_request(good))
        assert response.id == good.id and response.error is None
    assert kms.outcomes() == {"ok": 1}


def test_pipelined_requests_on_one_connection_are_all_answered(kms, start_proxy, document):
    proxy = start_proxy(kms.url, max_inflight_per_connection=2)
    requests = [Request(operation="GenerateRandom", request=_recipient_request(document)) for _ in range(5)]
    with connect(proxy.address, timeout=5) as sock:
        sock.sendall(b"".join(encode_frame(encode_request(r)) for r in requests))
        answers = [decode_response(recv_frame(sock, timeout=30)) for _ in requests]
    assert {a.id for a in answers} == {r.id for r in requests}
    assert all(a.error is None for a in answers)


# -- KMS errors and their retryable flags -----------------------------------------------------------------------


def test_kms_errors_from_the_simulator_are_mapped(kms, start_proxy, document):
    proxy = start_proxy(kms.url)
    client = WireClient(proxy.address)

    def error_of(request: dict[str, Any]) -> RemoteError:
        with pytest.raises(RemoteError) as info:
            client.call("GenerateRandom", request)
        return info.value

    kms.fail_next(1, error="KMSInternalException")
    error = error_of(_recipient_request(document))
    assert (error.code, error.retryable) == ("KMSInternalException", True)
    kms.fail_next(1, error="DependencyTimeoutException")
    error = error_of(_recipient_request(document))
    assert (error.code, error.retryable) == ("DependencyTimeoutException", True)
    kms.set_conditions(AttestationConditions.require(pcrs={0: "ab" * 48}))
    error = error_of(_recipient_request(document))
    assert (error.code, error.retryable) == ("AccessDeniedException", False)
    kms.set_conditions(None)
    request = generate_random_request(8, attestation_document=document, custom_key_store_id="cks-missing")
    error = error_of(request)
    assert (error.code, error.retryable) == ("CustomKeyStoreNotFoundException", False)
    # and the parent still answers normally afterwards
    assert "CiphertextForRecipient" in client.call("GenerateRandom", _recipient_request(document))


def test_botocore_standard_retries_run_inside_the_parent(kms, start_proxy, document):
    proxy = start_proxy(kms.url, kms_max_attempts=2)
    kms.fail_next(1, error="KMSInternalException")
    assert "CiphertextForRecipient" in WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
    assert kms.outcomes() == {"KMSInternalException": 1, "ok": 1}


_CFR = base64.b64encode(b"\x30\x80cms").decode()


@pytest.fixture(scope="module")
def shared_stand_in(tmp_path_factory) -> Iterator[tuple[StandInKms, ProxyThread]]:
    """One stand-in KMS and one proxy for the many answer-mapping cases (a boto3 client costs ~0.3 s)."""
    import boto3
    from botocore.config import Config

    stand_in = StandInKms()
    client = boto3.session.Session().client(
        "kms", endpoint_url=stand_in.url, region_name="us-east-1", aws_access_key_id=_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, proxies={}))
    listen = f"unix://{tmp_path_factory.mktemp('shared')}/p.sock"
    with ProxyThread(ProxyConfig(listen=listen), kms_client=client) as proxy:
        yield stand_in, proxy
    stand_in.close()


@pytest.mark.parametrize(("status", "body", "code", "retryable"), [
    (400, {"__type": "ThrottlingException", "message": "Rate exceeded"}, "ThrottlingException", True),
    (400, {"__type": "com.amazonaws.kms#ThrottlingException", "message": "x"}, "ThrottlingException", True),
    (400, {"__type": "LimitExceededException", "message": "quota"}, "LimitExceededException", False),
    (400, {"__type": "AccessDeniedException", "message": "no"}, "AccessDeniedException", False),
    (400, {"__type": "ValidationException", "message": "bad"}, "ValidationException", False),
    (400, {"__type": "UnsupportedOperationException", "message": "xks"}, "UnsupportedOperationException", False),
    (500, {"__type": "KMSInternalException", "message": "oops"}, "KMSInternalException", True),
    (500, {"__type": "DependencyTimeoutException", "message": "slow"}, "DependencyTimeoutException", True),
    (500, b"<html>Internal Server Error</html>", ErrorCode.KMS_ERROR, True),
    (503, b"", ErrorCode.KMS_ERROR, True),
    # An empty or cut-off 200 body (botocore parses a body that is not JSON to nothing at all): no answer was
    # received, as when KMS goes away mid-answer.
    (200, {}, ErrorCode.KMS_UNAVAILABLE, True),
    (200, b"", ErrorCode.KMS_UNAVAILABLE, True),
    (200, b"{not json", ErrorCode.KMS_UNAVAILABLE, True),
    (200, b"\x1f\x8b\x08\x00 a gzip body, not UTF-8 \xff", ErrorCode.INVALID_KMS_RESPONSE, False),
    (200, {"CiphertextForRecipient": ""}, ErrorCode.INVALID_KMS_RESPONSE, False),
    (200, {"CiphertextForRecipient": base64.b64encode(b"x" * 6145).decode()}, ErrorCode.INVALID_KMS_RESPONSE,
     False),
    (200, {"CiphertextForRecipient": _CFR, "Plaintext": "c2VjcmV0IGJ5dGVz"}, ErrorCode.PLAINTEXT_REFUSED, False),
    (200, {"Plaintext": "c2VjcmV0IGJ5dGVz"}, ErrorCode.PLAINTEXT_REFUSED, False),
    (200, [], ErrorCode.INTERNAL_ERROR, False),
])
def test_kms_answers_are_mapped_to_protocol_errors(shared_stand_in, document, caplog, status, body, code, retryable):
    stand_in, proxy = shared_stand_in
    stand_in.answer = (status, body if isinstance(body, bytes) else json.dumps(body).encode())
    stand_in.calls.clear()
    with pytest.raises(RemoteError) as info:
        WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
    assert (info.value.code, info.value.retryable) == (code, retryable)
    assert len(stand_in.calls) == 1 and stand_in.calls[0]["target"] == "TrentService.GenerateRandom"
    assert "c2VjcmV0IGJ5dGVz" not in str(info.value) and "c2VjcmV0IGJ5dGVz" not in caplog.text


def test_a_null_plaintext_beside_the_ciphertext_is_accepted(stand_in, start_proxy, document):
    stand_in.answer = (200, json.dumps({"Plaintext": None, "CiphertextForRecipient": _CFR}).encode())
    proxy = start_proxy(stand_in.url)
    assert WireClient(proxy.address).call("GenerateRandom", _recipient_request(document)) == \
        {"CiphertextForRecipient": _CFR}


def test_the_relayed_request_is_the_kms_json_the_enclave_sent(stand_in, start_proxy, document):
    proxy = start_proxy(stand_in.url)
    request = generate_random_request(77, attestation_document=document, custom_key_store_id="cks-1")
    WireClient(proxy.address).call("GenerateRandom", request)
    assert stand_in.calls[0]["body"] == request


def test_kms_unreachable_is_retryable(start_proxy, document):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = start_proxy(f"http://127.0.0.1:{port}")
    with pytest.raises(RemoteError) as info:
        WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
    assert (info.value.code, info.value.retryable) == (ErrorCode.KMS_UNAVAILABLE, True)


def test_kms_read_timeout_is_retryable(stand_in, start_proxy, document):
    stand_in.delay = 1.0
    proxy = start_proxy(stand_in.url, kms_read_timeout=0.2)
    with pytest.raises(RemoteError) as info:
        WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
    assert (info.value.code, info.value.retryable) == (ErrorCode.KMS_TIMEOUT, True)


def test_missing_credentials_are_reported(stand_in, start_proxy, document, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    proxy = start_proxy(stand_in.url)
    with pytest.raises(RemoteError) as info:
        WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
    assert (info.value.code, info.value.retryable) == (ErrorCode.NO_CREDENTIALS, False)
    assert stand_in.calls == []


def test_error_mapping_of_botocore_exceptions():
    from botocore import exceptions as bce

    def client_error(code: str, status: int) -> Exception:
        response: dict[str, Any] = {"Error": {"Code": code, "Message": "m"},
                                    "ResponseMetadata": {"HTTPStatusCode": status}}
        return bce.ClientError(response, "GenerateRandom")  # type: ignore[no-any-return]

    for code in ("DependencyTimeoutException", "KMSInternalException", "ThrottlingException", "Throttling",
                 "TooManyRequestsException", "RequestLimitExceeded"):
        assert code in RETRYABLE_KMS_CODES
        assert error_for_exception(client_error(code, 400)).retryable
    assert not error_for_exception(client_error("AccessDeniedException", 400)).retryable
    assert not error_for_exception(client_error("KMSInvalidStateException", 400)).retryable
    assert error_for_exception(client_error("SomethingNew", 502)).retryable
    assert error_for_exception(client_error("bad code\n", 400)).code == ErrorCode.KMS_ERROR
    timeouts = [bce.ConnectTimeoutError(endpoint_url="x"), bce.ReadTimeoutError(endpoint_url="x")]
    assert {(e.code, e.retryable) for e in map(error_for_exception, timeouts)} == {(ErrorCode.KMS_TIMEOUT, True)}
    for exc in (bce.EndpointConnectionError(endpoint_url="x"), bce.ConnectionClosedError(endpoint_url="x")):
        assert (error_for_exception(exc).code, error_for_exception(exc).retryable) == (ErrorCode.KMS_UNAVAILABLE, True)
    assert error_for_exception(bce.NoCredentialsError()).code == ErrorCode.NO_CREDENTIALS
    param = error_for_exception(bce.ParamValidationError(report="value: SECRET-VALUE"))
    assert param.code == ErrorCode.INVALID_REQUEST and "SECRET" not in param.message
    assert error_for_exception(RuntimeError("boom SECRET")).code == ErrorCode.INTERNAL_ERROR
    assert "SECRET" not in error_for_exception(RuntimeError("boom SECRET")).message


# -- misbehaving clients never stop the others ------------------------------------------------------------------


def _misbehave(kind: str, sock: socket.socket) -> None:
    if kind == "garbage":
        sock.sendall(encode_frame(b"\x00\xffthis is not json"))
    elif kind == "oversized":
        sock.sendall(struct.pack(">I", MAX_FRAME_SIZE + 1))  # and no body: refused from the prefix alone
    elif kind == "zero-length":
        sock.sendall(b"\x00\x00\x00\x00")
    elif kind == "unknown-version":
        sock.sendall(encode_frame(json.dumps({"version": 9, "id": "v9", "operation": "GenerateRandom",
                                              "request": {}}).encode()))
    elif kind == "unknown-operation":
        sock.sendall(encode_frame(json.dumps({"version": 1, "id": "op", "operation": "Encrypt",
                                              "request": {}}).encode()))
    elif kind in ("stall-mid-frame", "disconnect-mid-frame"):
        sock.sendall(b"\x00\x00\x01\x00" + b"{" * 10)
        if kind == "disconnect-mid-frame":
            sock.close()
    elif kind == "silent":
        pass


_EXPECTED = {
    "garbage": (ErrorCode.MALFORMED_FRAME, None),
    "oversized": (ErrorCode.FRAME_TOO_LARGE, None),
    "zero-length": (ErrorCode.MALFORMED_FRAME, None),
    "unknown-version": (ErrorCode.UNSUPPORTED_VERSION, "v9"),
    "unknown-operation": (ErrorCode.UNKNOWN_OPERATION, "op"),
    "stall-mid-frame": (ErrorCode.TIMEOUT, None),
}


@pytest.mark.parametrize("kind", ["garbage", "oversized", "zero-length", "unknown-version", "unknown-operation",
                                  "stall-mid-frame", "disconnect-mid-frame", "silent"])
def test_a_misbehaving_client_leaves_the_parent_serving_others(kms, start_proxy, document, kind):
    proxy = start_proxy(kms.url, read_timeout=1.5, idle_timeout=1.5)
    bad = connect(proxy.address, timeout=5)
    try:
        _misbehave(kind, bad)
        # Meanwhile (the stalled and silent ones are still being waited for), another enclave is served.
        answer = WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
        assert "CiphertextForRecipient" in answer
        if kind in _EXPECTED:
            code, request_id = _EXPECTED[kind]
            response = _expect_error_then_close(bad, code)
            assert response.id == request_id
        elif kind == "silent":
            bad.settimeout(10)
            assert bad.recv(1) == b""  # closed once idle, without an answer
    finally:
        bad.close()
    assert WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))


def test_a_client_that_never_reads_its_answers_is_cut_off(kms, start_proxy, document):
    proxy = start_proxy(kms.url, listen="tcp://127.0.0.1:0", read_timeout=0.5)
    bad = socket.socket()
    bad.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    bad.connect(proxy.address.sockaddr)
    # Invalid requests are answered without KMS, as fast as they come: the answers pile up unread.
    frame = encode_frame(encode_request(Request(operation="GenerateRandom", request={"NumberOfBytes": 0}, id="x")))
    outcome: queue.Queue[BaseException | None] = queue.Queue()

    def flood() -> None:
        bad.settimeout(30)
        try:
            for _ in range(1_000_000):
                bad.sendall(frame)
            outcome.put(None)
        except OSError as exc:
            outcome.put(exc)

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        assert "CiphertextForRecipient" in WireClient(proxy.address).call("GenerateRandom",
                                                                          _recipient_request(document))
        flooder.join(60)
        assert isinstance(outcome.get(timeout=1), ConnectionError)  # the parent cut it off
    finally:
        bad.close()
        flooder.join(5)
    assert "CiphertextForRecipient" in WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))


def test_idle_timeout_waits_while_a_call_is_in_flight(stand_in, start_proxy, document):
    stand_in.delay = 1.0  # the answer takes longer than the idle timeout
    proxy = start_proxy(stand_in.url, idle_timeout=0.3)
    assert WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))


def test_many_concurrent_connections(kms, start_proxy, rsa_key, document):
    proxy = start_proxy(kms.url, max_inflight=8)

    async def enclave(client: AsyncWireClient) -> list[bytes]:
        async with client:
            return [parse_generate_random_response(await client.call("GenerateRandom", _recipient_request(document)))
                    .ciphertext_for_recipient or b"" for _ in range(2)]

    async def main() -> list[list[bytes]]:
        return await asyncio.gather(*(enclave(AsyncWireClient(proxy.address, timeout=60)) for _ in range(40)))

    results = [envelope for per_enclave in asyncio.run(main()) for envelope in per_enclave]
    assert len(results) == 80
    randoms = {decrypt(envelope, rsa_key) for envelope in results}
    assert len(randoms) == 80
    assert kms.outcomes() == {"ok": 80}


def test_connections_over_the_limit_get_busy_then_close(kms, start_proxy, document):
    proxy = start_proxy(kms.url, max_connections=2)
    held = [connect(proxy.address, timeout=5) for _ in range(2)]
    try:
        for sock in held:  # each is registered: it answers
            response = _raw_exchange(sock, encode_request(Request(operation="GenerateRandom", request={})))
            assert response.error is not None and response.error.code == ErrorCode.INVALID_REQUEST
        with connect(proxy.address, timeout=5) as third:
            response = _expect_error_then_close(third, ErrorCode.BUSY)
            assert response.error is not None and response.error.retryable
    finally:
        held.pop().close()
    try:
        deadline = time.monotonic() + 10
        while True:  # the freed place is taken as soon as the parent has seen the close
            try:
                assert WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
                break
            except (RemoteError, TransportError) as exc:
                # Until then: Busy, or (under load) the refusal's close arriving while the request is still
                # being sent, a broken pipe.
                busy = isinstance(exc, TransportError) or exc.code == ErrorCode.BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()


def test_calls_over_the_worker_limit_get_busy(stand_in, start_proxy, document):
    stand_in.gate = threading.Event()
    proxy = start_proxy(stand_in.url, max_inflight=1, queue_timeout=0.3, kms_read_timeout=30)
    first: queue.Queue[object] = queue.Queue()
    thread = threading.Thread(target=lambda: first.put(
        WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))))
    thread.start()
    try:
        assert stand_in.received.wait(10)  # the only worker is now busy with the first call
        with pytest.raises(RemoteError) as info:
            WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))
        assert (info.value.code, info.value.retryable) == (ErrorCode.BUSY, True)
    finally:
        stand_in.gate.set()
        thread.join(10)
    assert "CiphertextForRecipient" in first.get(timeout=1)  # type: ignore[operator]


# -- stopping ---------------------------------------------------------------------------------------------------


def test_stop_finishes_calls_in_flight_and_refuses_new_connections(stand_in, start_proxy, document, tmp_path):
    stand_in.gate = threading.Event()
    proxy = start_proxy(stand_in.url, listen=f"unix://{tmp_path}/stop.sock", kms_read_timeout=30)
    answers: queue.Queue[object] = queue.Queue()
    caller = threading.Thread(target=lambda: answers.put(
        WireClient(proxy.address).call("GenerateRandom", _recipient_request(document))))
    caller.start()
    assert stand_in.received.wait(10)
    stopper = threading.Thread(target=proxy.stop, kwargs={"timeout": 20})
    stopper.start()
    deadline = time.monotonic() + 10
    while _accepts(proxy.address):
        assert time.monotonic() < deadline, "the proxy kept accepting after stop"
        time.sleep(0.02)
    assert stopper.is_alive() and caller.is_alive()  # still waiting for the call in flight
    stand_in.gate.set()
    caller.join(10)
    stopper.join(20)
    assert not stopper.is_alive()
    assert "CiphertextForRecipient" in answers.get(timeout=1)  # type: ignore[operator]
    assert not os.path.exists(tmp_path / "stop.sock")


def _accepts(address: Any) -> bool:
    try:
        connect(address, timeout=1).close()
    except TransportError:
        return False
    return True


def test_stop_is_bounded_by_the_grace_period(stand_in, start_proxy, document):
    stand_in.gate = threading.Event()  # never released before the stop
    proxy = start_proxy(stand_in.url, grace_period=0.3, kms_read_timeout=30)
    errors: queue.Queue[BaseException] = queue.Queue()

    def call() -> None:
        try:
            WireClient(proxy.address, timeout=30).call("GenerateRandom", _recipient_request(document))
        except BaseException as exc:
            errors.put(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert stand_in.received.wait(10)
    proxy.stop(timeout=10)
    caller.join(10)
    assert not caller.is_alive()
    assert isinstance(errors.get(timeout=1), TransportError)  # cut off: retryable, on another parent


def test_proxy_as_async_context_manager(kms, aws_env, tmp_path, document):
    async def main() -> dict[str, Any]:
        config = ProxyConfig(listen=f"unix://{tmp_path}/ctx.sock", region="us-east-1", endpoint_url=kms.url)
        async with ParentProxy(config) as proxy, AsyncWireClient(proxy.address) as client:
            return await client.call("GenerateRandom", _recipient_request(document))

    assert "CiphertextForRecipient" in asyncio.run(main())


# -- configuration and the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "fragment"), [
    ({"listen": "vsock://x:1"}, "CID 'x'"),
    ({"max_connections": 0}, "max_connections"),
    ({"max_inflight": 5000}, "max_inflight"),
    ({"read_timeout": 0}, "read_timeout"),
    ({"idle_timeout": float("nan")}, "idle_timeout"),
    ({"max_frame_size": MAX_FRAME_SIZE + 1}, "max_frame_size"),
    ({"kms_max_attempts": True}, "kms_max_attempts"),
    ({"operations": ()}, "non-empty tuple"),
    ({"operations": ["Decrypt"]}, "non-empty tuple"),
    ({"operations": ("Encrypt",)}, "Encrypt is not one the parent can relay"),
    ({"operations": ("\x1b[2J",)}, r"\(not a name\) is not one"),
    ({"operations": ("Decrypt", "Decrypt")}, "twice"),
])
def test_config_is_checked(options, fragment):
    with pytest.raises(UsageError, match=fragment):
        ProxyConfig(**options)


def test_start_up_errors_are_usage_errors(aws_env, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(UsageError, match="no AWS region"):
        ProxyThread(ProxyConfig(listen=f"unix://{tmp_path}/r.sock")).start()
    with pytest.raises(UsageError, match="profile 'nobody' not found"):
        ProxyThread(ProxyConfig(listen=f"unix://{tmp_path}/r.sock", region="us-east-1", profile="nobody")).start()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a socket"):
        ProxyThread(ProxyConfig(listen=f"unix://{tmp_path}/file", region="us-east-1")).start()


def _start_cli(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "nitrokit", "parent", *args], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        first = lines.get(timeout=30)
    except queue.Empty:
        process.kill()
        raise AssertionError("the parent printed no address within 30 s") from None
    return process, first


def _cli_env(tmp_path) -> dict[str, str]:
    env = _aws_environment(dict(os.environ), tmp_path)
    return env


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_prints_the_address_first_and_exits_0_after_finishing_calls_in_flight(stand_in, tmp_path, document,
                                                                                   signum):
    stand_in.gate = threading.Event()
    args = ["--listen", "tcp://127.0.0.1:0", "--region", "us-east-1", "--endpoint-url", stand_in.url,
            "--kms-max-attempts", "1", "--kms-read-timeout", "30"]
    process, first_line = _start_cli(args, _cli_env(tmp_path))
    try:
        address = parse_address(first_line.strip())
        assert first_line.startswith("tcp://127.0.0.1:") and address.port != 0  # type: ignore[union-attr]
        answers: queue.Queue[object] = queue.Queue()
        caller = threading.Thread(target=lambda: answers.put(
            WireClient(address).call("GenerateRandom", _recipient_request(document))))
        caller.start()
        assert stand_in.received.wait(20)
        process.send_signal(signum)
        deadline = time.monotonic() + 10
        while _accepts(address):  # it stops accepting at once...
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert process.poll() is None  # ...but waits for the call in flight
        stand_in.gate.set()
        caller.join(20)
        assert "CiphertextForRecipient" in answers.get(timeout=1)  # type: ignore[operator]
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert stdout == ""  # nothing after the address line
    call_lines = [line for line in stderr.splitlines() if " call op=GenerateRandom" in line]
    assert len(call_lines) == 1 and "outcome=ok" in call_lines[0] and " ms=" in call_lines[0]
    assert base64.b64encode(document)[:40].decode() not in stderr


@pytest.mark.parametrize(("args", "fragment"), [
    (["--listen", "bogus"], "no scheme"),
    (["--listen", "tcp://127.0.0.1:0", "--max-inflight", "0"], "max_inflight"),
    (["--listen", "tcp://127.0.0.1:0", "--read-timeout", "-1"], "read_timeout"),
])
def test_cli_usage_errors_exit_2(tmp_path, args, fragment):
    result = subprocess.run([sys.executable, "-m", "nitrokit", "parent", *args], cwd=REPO, env=_cli_env(tmp_path),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and result.stdout == ""


# -- bounds on KMS itself (issue 12) ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_a_dripping_kms_is_cut_at_the_call_deadline(start_proxy, document, mode):
    # botocore's read timeout is per read: a byte every 0.2 s never trips a 1 s read timeout, and the call
    # ran until KMS stopped dripping. Now the call has a total deadline, and its worker is abandoned (its
    # socket shut down) rather than left reading.
    drip = DripKms(mode)
    try:
        proxy = start_proxy(drip.url, kms_read_timeout=1, kms_call_timeout=1)
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            WireClient(proxy.address, timeout=30).call("GenerateRandom", _recipient_request(document))
        assert time.monotonic() - started < 10  # the drip alone would go on for minutes
        assert caught.value.code == ErrorCode.KMS_TIMEOUT and caught.value.retryable
        assert "deadline" in caught.value.remote_message
        assert drip.closed.wait(5), "the abandoned worker kept KMS's connection open"
    finally:
        drip.close()


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the peak RSS from /proc")
@pytest.mark.parametrize("mode", ["huge", "chunked"])
def test_a_huge_kms_answer_is_refused_without_buffering_it(tmp_path, document, mode):
    # A 100 MB answer took 452 MB of RSS before it was refused; now at most MAX_KMS_ANSWER_BYTES are read,
    # whether the answer declares its length (refused unread) or not (refused once the cap is passed).
    from nitrokit.parent._kms import MAX_KMS_ANSWER_BYTES

    drip = DripKms(mode)
    args = ["--listen", "tcp://127.0.0.1:0", "--region", "us-east-1", "--endpoint-url", drip.url,
            "--kms-max-attempts", "1"]
    process, first_line = _start_cli(args, _cli_env(tmp_path))
    try:
        before = _peak_rss_kb(process.pid)
        with pytest.raises(RemoteError) as caught:
            WireClient(parse_address(first_line.strip()), timeout=60).call("GenerateRandom",
                                                                           _recipient_request(document))
        after = _peak_rss_kb(process.pid)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        drip.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert caught.value.code == ErrorCode.INVALID_KMS_RESPONSE and not caught.value.retryable
    assert str(MAX_KMS_ANSWER_BYTES) in caught.value.remote_message
    assert after - before < 50 * 1024, f"peak RSS grew by {(after - before) // 1024} MB"  # 100 MB body, unread
    assert drip.sent < 50 * 1024 * 1024  # the parent hung up instead of taking it all
    assert "Traceback" not in stderr


def test_the_answer_cap_is_above_the_largest_legal_answer():
    from nitrokit.kms_api import MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES, MAX_PLAINTEXT_BYTES
    from nitrokit.parent._kms import MAX_KMS_ANSWER_BYTES

    envelope = b"x" * MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES
    largest = json.dumps({"Plaintext": base64.b64encode(b"x" * MAX_PLAINTEXT_BYTES).decode(),
                          "CiphertextForRecipient": base64.b64encode(envelope).decode(),
                          "KeyId": "arn:aws:kms:us-east-1:111122223333:key/" + "0" * 36})
    assert 2 * len(largest) < MAX_KMS_ANSWER_BYTES < 1024 * 1024


def test_stop_abandons_a_stuck_call_within_the_grace_period_and_logs_it(tmp_path, document):
    # With the worker thread joined, SIGTERM with --grace-period 3 took 37 s against a dripping KMS, and the
    # cancelled call was logged as a CancelledError traceback. Now: grace period + about a second, one line.
    drip = DripKms("body")
    args = ["--listen", "tcp://127.0.0.1:0", "--region", "us-east-1", "--endpoint-url", drip.url,
            "--kms-max-attempts", "1", "--kms-read-timeout", "2", "--kms-call-timeout", "120",
            "--grace-period", "1"]
    process, first_line = _start_cli(args, _cli_env(tmp_path))

    def call() -> None:
        with contextlib.suppress(RemoteError, TransportError):  # cut off by the stop: that is the point
            WireClient(parse_address(first_line.strip()), timeout=60).call("GenerateRandom",
                                                                           _recipient_request(document))

    caller = threading.Thread(target=call, daemon=True)
    try:
        caller.start()
        assert drip.received.wait(20)
        time.sleep(0.3)  # the headers are in: the worker is reading the dripping body
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        assert time.monotonic() - stopped < 1 + 5  # the grace period, and far less than the drip would take
    finally:
        drip.close()
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    abandoned = [line for line in stderr.splitlines() if "outcome=abandoned" in line]
    assert len(abandoned) == 1 and "call op=GenerateRandom" in abandoned[0], stderr
    assert "Traceback" not in stderr and "CancelledError" not in stderr, stderr
    caller.join(10)
