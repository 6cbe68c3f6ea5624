"""The generic wire server (common/wire/server.py) with trivial handlers, over real Unix and TCP sockets.

The parent proxy's own behaviour (KMS relay, its limits) is in test_parent.py; here is what every server
speaking the protocol does, whatever its handler: answers, error responses, refusals, limits, stopping.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from nitrokit.errors import UsageError
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
    parse_address,
    recv_frame,
)
from nitrokit.wire.server import CallFailed, ServerLimits, ServerThread, WireServer
from tests.conftest import REPO

ECHO = {"Echo"}


class Echo:
    """A handler: ``{"Text": t}`` -> ``{"Echo": t}``; other members make it misbehave on purpose.

    ``gate``: calls with ``{"Wait": true}`` wait for it (polled, so a stop can still cancel them); ``entered`` is
    set when such a call starts; ``active``/``peak`` count calls running at once.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.active = 0
        self.peak = 0

    async def __call__(self, request: Request) -> Mapping[str, Any]:
        body = request.request
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            if body.get("Fail"):
                raise CallFailed(str(body["Fail"]), "refused on purpose", retryable=bool(body.get("Retryable")))
            if body.get("Crash"):
                raise RuntimeError("handler bug with SECRET-DETAIL")
            if body.get("Return") == "list":
                return ["not", "a", "mapping"]  # type: ignore[return-value]
            if body.get("Return") == "unserialisable":
                return {"Echo": object()}
            if body.get("Sleep"):
                await asyncio.sleep(float(body["Sleep"]))
            if body.get("Wait"):
                self.entered.set()
                while not self.gate.is_set():
                    await asyncio.sleep(0.01)
            if body.get("Repeat"):
                return {"Echo": str(body.get("Text")) * int(body["Repeat"])}
            return {"Echo": body.get("Text")}
        finally:
            self.active -= 1


@pytest.fixture(params=["unix", "tcp"])
def listen_address(request, tmp_path) -> str:
    return f"unix://{tmp_path}/s.sock" if request.param == "unix" else "tcp://127.0.0.1:0"


@pytest.fixture
def start_server(tmp_path) -> Iterator[Callable[..., tuple[ServerThread[WireServer], Echo]]]:
    """Start an echo WireServer (allow-list {"Echo"}) in a thread with limit overrides; stopped after the test."""
    running: list[ServerThread[WireServer]] = []

    def start(*, listen: str | None = None, handler: Echo | None = None,
              **limits: Any) -> tuple[ServerThread[WireServer], Echo]:
        echo = handler or Echo()
        server = WireServer(ServerLimits(**limits), echo, operations=ECHO, name="echo",
                            listen=listen or f"unix://{tmp_path}/e{len(running)}.sock")
        thread = ServerThread(server)
        thread.start()
        running.append(thread)
        return thread, echo

    yield start
    for thread in running:
        thread.stop(timeout=10)


def _frame(operation: str, body: Mapping[str, Any], request_id: str = "r1") -> bytes:
    return encode_frame(encode_request(Request(operation=operation, request=body, id=request_id),
                                       operations={operation}))


def _exchange(sock: socket.socket, operation: str, body: Mapping[str, Any], request_id: str = "r1") -> Response:
    sock.sendall(_frame(operation, body, request_id))
    return decode_response(recv_frame(sock, timeout=10))


def _expect_error_then_close(sock: socket.socket, code: str) -> Response:
    response = decode_response(recv_frame(sock, timeout=10))
    assert response.error is not None and response.error.code == code, response
    sock.settimeout(10)
    assert sock.recv(1) == b""  # then a clean close
    return response


def _accepts(address: Any) -> bool:
    try:
        connect(address, timeout=1).close()
    except TransportError:
        return False
    return True


# -- answers and error responses --------------------------------------------------------------------------------


def test_answers_with_the_handlers_json_and_logs_one_line_per_call(start_server, listen_address, caplog):
    caplog.set_level(logging.INFO, logger="nitrokit.echo")
    running, _ = start_server(listen=listen_address)
    if listen_address.startswith("tcp"):
        assert running.address.port != 0
    with WireClient(running.address, operations=ECHO) as client:
        assert [client.call("Echo", {"Text": text}) for text in ("a", "b")] == [{"Echo": "a"}, {"Echo": "b"}]
    calls = [r.getMessage() for r in caplog.records if r.name == "nitrokit.echo" and r.getMessage().startswith("call ")]
    assert len(calls) == 2
    assert all("op=Echo id=" in line and " conn=1 outcome=ok ms=" in line for line in calls)


def test_call_failed_is_an_error_response_on_a_connection_that_stays_open(start_server):
    running, _ = start_server()
    with connect(running.address, timeout=5) as sock:
        response = _exchange(sock, "Echo", {"Fail": "NotToday", "Retryable": True}, "f1")
        assert response.id == "f1" and response.error is not None
        assert (response.error.code, response.error.message, response.error.retryable) == \
            ("NotToday", "refused on purpose", True)
        response = _exchange(sock, "Echo", {"Fail": ErrorCode.INVALID_REQUEST}, "f2")
        assert response.error is not None and (response.error.code, response.error.retryable) == \
            (ErrorCode.INVALID_REQUEST, False)
        assert _exchange(sock, "Echo", {"Text": "still here"}, "ok").response == {"Echo": "still here"}
    with pytest.raises(RemoteError) as info:
        WireClient(running.address, operations=ECHO).call("Echo", {"Fail": "Nope"})
    assert (info.value.code, info.value.retryable) == ("Nope", False)


@pytest.mark.parametrize("body", [{"Crash": True}, {"Return": "list"}, {"Return": "unserialisable"},
                                  {"Fail": "bad code\nwith a newline"}])
def test_a_handler_bug_costs_one_call_an_internal_error(start_server, caplog, body):
    caplog.set_level(logging.INFO, logger="nitrokit.echo")
    running, _ = start_server()
    with connect(running.address, timeout=5) as sock:
        response = _exchange(sock, "Echo", body, "bug")
        assert response.id == "bug" and response.error is not None
        assert (response.error.code, response.error.retryable) == (ErrorCode.INTERNAL_ERROR, False)
        assert response.error.message == "internal error in the echo (see its log)"
        # the same connection, and the server, go on
        assert _exchange(sock, "Echo", {"Text": "after"}, "next").response == {"Echo": "after"}
    assert "SECRET-DETAIL" not in caplog.text
    assert any("outcome=InternalError" in r.getMessage() for r in caplog.records)


def test_an_answer_over_the_frame_limit_is_an_internal_error(start_server):
    running, _ = start_server()
    with pytest.raises(RemoteError) as info:
        WireClient(running.address, operations=ECHO).call("Echo", {"Text": "x", "Repeat": MAX_FRAME_SIZE})
    assert info.value.code == ErrorCode.INTERNAL_ERROR


# -- refusals ---------------------------------------------------------------------------------------------------


def test_an_operation_off_the_allow_list_is_refused_then_closed(start_server):
    running, _ = start_server()
    with connect(running.address, timeout=5) as sock:
        sock.sendall(_frame("GenerateRandom", {"NumberOfBytes": 32}, "kms"))  # the parent's, not this server's
        response = _expect_error_then_close(sock, ErrorCode.UNKNOWN_OPERATION)
        assert response.id == "kms" and "Echo" in response.error.message  # type: ignore[union-attr]
    assert WireClient(running.address, operations=ECHO).call("Echo", {"Text": "ok"}) == {"Echo": "ok"}


@pytest.mark.parametrize(("payload", "code"), [
    (encode_frame(b"{not json"), ErrorCode.MALFORMED_FRAME),
    (b"\x00\x00\x00\x00", ErrorCode.MALFORMED_FRAME),
    ((2048).to_bytes(4, "big"), ErrorCode.FRAME_TOO_LARGE),  # over max_frame_size=1024: the body is never read
    (encode_frame(json.dumps({"version": 2, "id": "v2", "operation": "Echo", "request": {}}).encode()),
     ErrorCode.UNSUPPORTED_VERSION),
    (b"\x00\x00\x01\x00{", ErrorCode.TIMEOUT),  # a frame started and never finished
])
def test_protocol_errors_are_answered_then_closed(start_server, payload, code):
    running, _ = start_server(max_frame_size=1024, read_timeout=0.3)
    with connect(running.address, timeout=5) as sock:
        sock.sendall(payload)
        _expect_error_then_close(sock, code)


def test_an_idle_connection_is_closed_without_an_answer(start_server):
    running, _ = start_server(idle_timeout=0.2)
    with connect(running.address, timeout=5) as sock:
        sock.settimeout(10)
        assert sock.recv(1) == b""


def _answered_once_freed(address: Any) -> None:
    """A call succeeds once the server has seen a close that freed a place (until then: Busy)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            assert WireClient(address, operations=ECHO).call("Echo", {"Text": "next"}) == {"Echo": "next"}
            return
        except (RemoteError, TransportError) as exc:
            # Busy, or (under load) the refusal's close breaking the pipe of a request still being sent.
            busy = isinstance(exc, TransportError) or exc.code == ErrorCode.BUSY
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _tcp_from(source: str, address: Any) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect((address.host, address.port))
    return sock


def test_one_peer_cannot_take_every_connection(start_server):
    # Issue 12: one peer held every slot and starved the others. Now a peer (here a TCP host) has its own cap;
    # another peer still gets in while the first one is at its cap.
    running, _ = start_server(listen="tcp://127.0.0.1:0", max_connections=8, max_connections_per_peer=2)
    held = [_tcp_from("127.0.0.1", running.address) for _ in range(2)]
    try:
        for sock in held:
            assert _exchange(sock, "Echo", {"Text": "mine"}).response == {"Echo": "mine"}  # registered
        with _tcp_from("127.0.0.1", running.address) as third:
            response = _expect_error_then_close(third, ErrorCode.BUSY)
            assert response.error is not None and response.error.retryable
            assert "this peer" in response.error.message
        with _tcp_from("127.0.0.2", running.address) as other_peer:  # another host on loopback
            assert _exchange(other_peer, "Echo", {"Text": "other"}).response == {"Echo": "other"}
    finally:
        for sock in held:
            sock.close()
    _answered_once_freed(running.address)  # the peer's places are free again


def test_unix_peers_are_counted_by_uid(start_server):
    running, _ = start_server(max_connections=8, max_connections_per_peer=1)
    with connect(running.address, timeout=5) as held:
        assert _exchange(held, "Echo", {"Text": "mine"}).response == {"Echo": "mine"}
        with connect(running.address, timeout=5) as second:  # same uid: the same peer
            _expect_error_then_close(second, ErrorCode.BUSY)


def test_peer_names(tmp_path):
    from nitrokit.wire.server import peer_of

    assert peer_of(None) == "unknown"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "peer.sock"))
    server.listen(1)
    with server, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(tmp_path / "peer.sock"))
        accepted, _ = server.accept()
        with accepted:
            assert peer_of(accepted) == f"unix:uid={os.getuid()}"
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.close()
    assert peer_of(closed) == "unknown"  # a socket the system cannot name: counted, never a crash


def test_the_refusal_log_admits_one_line_per_interval():
    from nitrokit.wire.server import RefusalLog

    now = [100.0]
    refusals = RefusalLog(1.0, clock=lambda: now[0])
    assert refusals.admit() == ""            # the first is logged
    assert [refusals.admit() for _ in range(3)] == [None] * 3
    now[0] += 0.999
    assert refusals.admit() is None
    now[0] += 0.001
    assert refusals.admit() == "; 4 more refused before this one, not logged"
    now[0] += 5
    assert refusals.admit() == ""


def test_refused_connections_cannot_flood_the_log(start_server, caplog):
    """Relay mode and the credentials channel: a peer connecting in a loop over its cap got one warning line
    per connection. Now at most one a second, each counting the ones left out before it."""
    caplog.set_level(logging.WARNING, logger="nitrokit.echo")
    running, _ = start_server(max_connections=8, max_connections_per_peer=1)
    with connect(running.address, timeout=5) as held:
        assert _exchange(held, "Echo", {"Text": "mine"}).response == {"Echo": "mine"}  # registered
        started = time.monotonic()
        for _ in range(100):
            with connect(running.address, timeout=5) as refused:
                _expect_error_then_close(refused, ErrorCode.BUSY)
        elapsed = time.monotonic() - started
        time.sleep(1.1)
        with connect(running.address, timeout=5) as refused:  # its line counts those left out since the last
            _expect_error_then_close(refused, ErrorCode.BUSY)
    lines = [record.getMessage() for record in caplog.records if " refused: " in record.getMessage()]
    assert len(lines) <= elapsed + 2
    left_out = [int(line.rpartition("; ")[2].split()[0]) for line in lines if "before this one" in line]
    assert left_out and len(lines) + sum(left_out) == 101


def test_connections_over_the_limit_get_busy_then_close(start_server):
    running, _ = start_server(max_connections=1)
    with connect(running.address, timeout=5) as held:
        assert _exchange(held, "Echo", {"Text": "mine"}).response == {"Echo": "mine"}  # registered
        with connect(running.address, timeout=5) as second:
            response = _expect_error_then_close(second, ErrorCode.BUSY)
            assert response.id is None and response.error is not None and response.error.retryable
        assert running.server.connections == 1
        assert _exchange(held, "Echo", {"Text": "still mine"}).response == {"Echo": "still mine"}
    _answered_once_freed(running.address)  # the place is free again


def test_pipelined_calls_run_at_most_max_inflight_per_connection_at_once(start_server):
    running, echo = start_server(max_inflight_per_connection=2)
    with connect(running.address, timeout=5) as sock:
        sock.sendall(b"".join(_frame("Echo", {"Text": str(n), "Sleep": 0.05}, f"p{n}") for n in range(6)))
        answers = [decode_response(recv_frame(sock, timeout=10)) for _ in range(6)]
    assert {a.id: a.response for a in answers} == {f"p{n}": {"Echo": str(n)} for n in range(6)}
    assert echo.peak == 2


# -- stopping ---------------------------------------------------------------------------------------------------


def test_a_graceful_stop_finishes_calls_in_flight_and_refuses_new_connections(start_server, tmp_path):
    running, echo = start_server(listen=f"unix://{tmp_path}/stop.sock")
    answers: queue.Queue[object] = queue.Queue()
    caller = threading.Thread(target=lambda: answers.put(
        WireClient(running.address, operations=ECHO).call("Echo", {"Text": "late", "Wait": True})))
    caller.start()
    assert echo.entered.wait(10)
    stopper = threading.Thread(target=running.stop, kwargs={"timeout": 10})
    stopper.start()
    deadline = time.monotonic() + 10
    while _accepts(running.address):
        assert time.monotonic() < deadline, "the server kept accepting after stop"
        time.sleep(0.02)
    assert stopper.is_alive() and caller.is_alive()  # still waiting for the call in flight
    echo.gate.set()
    caller.join(10)
    stopper.join(10)
    assert not stopper.is_alive()
    assert answers.get(timeout=1) == {"Echo": "late"}
    assert not os.path.exists(tmp_path / "stop.sock")


def test_a_stop_is_bounded_by_the_grace_period(start_server):
    running, echo = start_server(grace_period=0.2)
    errors: queue.Queue[BaseException] = queue.Queue()

    def call() -> None:
        try:
            WireClient(running.address, operations=ECHO, timeout=10).call("Echo", {"Wait": True})
        except BaseException as exc:
            errors.put(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert echo.entered.wait(10)
    running.stop(timeout=10)  # the gate is never opened
    caller.join(10)
    assert not caller.is_alive()
    assert isinstance(errors.get(timeout=1), TransportError)  # cut off


def test_async_use_without_a_thread(tmp_path):
    async def main() -> dict[str, Any]:
        async def canned(request: Request) -> Mapping[str, Any]:
            return {"CiphertextForRecipient": "AAAA"}

        server = WireServer(ServerLimits(), canned, operations={"GenerateRandom"}, name="canned")
        address = await server.start(f"unix://{tmp_path}/a.sock")
        assert await server.start() == address  # a second start is a no-op
        async with AsyncWireClient(address) as client:
            answer = await client.call("GenerateRandom", {"NumberOfBytes": 8})
            assert server.connections == 1
        await server.stop()
        assert not _accepts(address)
        return answer

    assert asyncio.run(main()) == {"CiphertextForRecipient": "AAAA"}


# -- configuration ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "fragment"), [
    ({"max_connections": 0}, "max_connections"),
    ({"max_connections_per_peer": 0}, "max_connections_per_peer"),
    ({"max_inflight_per_connection": 1025}, "max_inflight_per_connection"),
    ({"max_frame_size": MAX_FRAME_SIZE + 1}, "max_frame_size"),
    ({"read_timeout": 0}, "read_timeout"),
    ({"idle_timeout": float("nan")}, "idle_timeout"),
    ({"grace_period": True}, "grace_period"),
])
def test_limits_are_checked(options, fragment):
    with pytest.raises(UsageError, match=fragment):
        ServerLimits(**options)


async def _nothing(request: Request) -> Mapping[str, Any]:
    return {}


@pytest.mark.parametrize(("options", "fragment"), [
    ({"operations": "Echo"}, "operations"),
    ({"operations": ()}, "operations"),
    ({"name": "bad name"}, "server name"),
    ({"listen": "bogus"}, "no scheme"),
])
def test_server_options_are_checked(options, fragment):
    with pytest.raises(UsageError, match=fragment):
        WireServer(ServerLimits(), _nothing, **options)


def test_start_up_errors_are_raised_by_server_thread_start(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a socket"):
        ServerThread(WireServer(ServerLimits(), _nothing, listen=f"unix://{tmp_path}/file")).start()
    with pytest.raises(UsageError, match="no address"):
        ServerThread(WireServer(ServerLimits(), _nothing)).start()
    with pytest.raises(UsageError, match="not started"):
        _ = ServerThread(WireServer(ServerLimits(), _nothing)).address


# -- run_until_signal -------------------------------------------------------------------------------------------

_CHILD = """
import sys
from nitrokit.wire.server import ServerLimits, WireServer, run_until_signal

async def echo(request):
    return {"Echo": request.request.get("Text")}

server = WireServer(ServerLimits(), echo, operations={"Echo"}, name="echo", listen=sys.argv[1])
raise SystemExit(run_until_signal(server, on_listening=lambda address: print(address, flush=True)))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_until_signal_prints_the_address_then_stops_gracefully(tmp_path, signum):
    process = subprocess.Popen([sys.executable, "-c", _CHILD, "tcp://127.0.0.1:0"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        stdout_pipe = process.stdout
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(stdout_pipe.readline()), daemon=True).start()
        first = lines.get(timeout=30)
        address = parse_address(first.strip())
        assert first.startswith("tcp://127.0.0.1:") and address.port != 0  # type: ignore[union-attr]
        assert WireClient(address, operations=ECHO).call("Echo", {"Text": "hi"}) == {"Echo": "hi"}
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert stdout == ""

