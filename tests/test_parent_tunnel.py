"""The parent's tunnel mode over real sockets: bytes both ways, backpressure, caps, timeouts, half-close,
the graceful stop, its log lines, and the command line."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nitrokit.parent.tunnel import TunnelConfig, TunnelThread
from nitrokit.testing.processes import NitrokitProcess, simulator_environment
from nitrokit.wire.address import connect
from nitrokit.wire.credentials import AwsCredentials, CredentialsClient
from nitrokit.wire.errors import TransportError

CONTENT = b"CONTENT-MARKER-7d41c2"  # must never reach a log
Handler = Callable[[socket.socket], None]


class Target:
    """A TCP server on loopback running ``handler`` on each connection in its own thread."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.server = socket.create_server((host, 0), family=family)
        self.port = self.server.getsockname()[1]
        self.handler = handler
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.handler(conn)

    def close(self) -> None:
        self.server.close()


def echo(conn: socket.socket) -> None:
    """Echo until end of file, then say goodbye and close."""
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.sendall(b"bye")


def hold(conn: socket.socket) -> None:
    """Take everything, answer nothing, until the peer goes."""
    while conn.recv(65536):
        pass


@pytest.fixture
def echo_target() -> Iterator[Target]:
    target = Target(echo)
    yield target
    target.close()


def config(tmp_path: Path, target: str, **options: Any) -> TunnelConfig:
    return TunnelConfig(listen=f"unix://{tmp_path / 'tunnel.sock'}", target=target, credentials_listen=None,
                        **options)


def tunnel_lines(caplog: pytest.LogCaptureFixture, count: int = 1, timeout: float = 10.0) -> list[str]:
    """The first ``count`` tunnel log lines (they are written when a tunnel ends, in the tunnel's thread)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [record.getMessage() for record in caplog.records if record.getMessage().startswith("tunnel ")]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.01)


def fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split(" (", maxsplit=1)[0].split()[1:])


def send_and_close(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="nitrokit.parent")


def test_bytes_cross_exactly_both_ways_and_the_log_line_has_no_content(
        tmp_path: Path, echo_target: Target, caplog: pytest.LogCaptureFixture) -> None:
    payload = CONTENT + os.urandom(300_000)
    with TunnelThread(config(tmp_path, f"127.0.0.1:{echo_target.port}")) as running, \
            connect(running.address, timeout=5) as sock:
        sock.settimeout(10)
        sender = threading.Thread(target=send_and_close, args=(sock, payload))
        sender.start()
        received = recv_all(sock)
        sender.join()
    assert received == payload + b"bye"
    [line] = tunnel_lines(caplog)
    got = fields(line)
    assert got["peer"].startswith("unix:uid=")
    assert got["target"] == f"127.0.0.1:{echo_target.port}" and got["ip"] == "127.0.0.1"
    assert (int(got["bytes_up"]), int(got["bytes_down"])) == (len(payload), len(payload) + 3)
    assert got["end"] == "client-closed" and float(got["ms"]) >= 0
    assert CONTENT.decode() not in caplog.text


def test_half_close_passes_the_end_of_file_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def greet_then_listen(conn: socket.socket) -> None:
        conn.sendall(b"hello ")
        conn.shutdown(socket.SHUT_WR)     # the target is done talking...
        heard = recv_all(conn)            # ...but still listens until the client is done
        conn.sendall(b"never")  # after its own end of file: the tunnel must not carry it (it cannot, TCP)
        assert heard == b"question"

    target = Target(greet_then_listen)
    try:
        with TunnelThread(config(tmp_path, f"127.0.0.1:{target.port}")) as running, \
                connect(running.address, timeout=5) as sock:
            sock.settimeout(10)
            assert recv_all(sock) == b"hello "   # end of file from the target reached the client
            send_and_close(sock, b"question")    # the other way is still open
            [line] = tunnel_lines(caplog)
    finally:
        target.close()
    assert fields(line)["end"] == "target-closed" and fields(line)["bytes_up"] == str(len(b"question"))


def test_a_slow_reader_holds_the_transfer_back_with_bounded_buffers(tmp_path: Path) -> None:
    total = 48 << 20
    block = os.urandom(1 << 20)
    finished = threading.Event()

    def flood(conn: socket.socket) -> None:
        for _ in range(total // len(block)):
            conn.sendall(block)
        finished.set()

    target = Target(flood)
    buffer_size = 16384
    try:
        with TunnelThread(config(tmp_path, f"127.0.0.1:{target.port}", buffer_size=buffer_size)) as running, \
                connect(running.address, timeout=5) as sock:
            sock.settimeout(10)
            first = sock.recv(1000)
            peaks = []
            for _ in range(20):  # the client reads nothing for a while
                time.sleep(0.02)
                peaks.append(running.proxy.buffered_bytes())
            assert not finished.is_set()  # the target is held back: the proxy stopped reading it
            assert max(peaks) <= 2 * buffer_size
            digest = hashlib.sha256(first)
            received = len(first)
            while received < total:
                chunk = sock.recv(1 << 20)
                assert chunk
                digest.update(chunk)
                received += len(chunk)
    finally:
        target.close()
    assert digest.digest() == hashlib.sha256(block * (total // len(block))).digest()


@pytest.mark.parametrize("cap", ["max_connections", "max_connections_per_peer"])
def test_a_connection_over_a_cap_is_closed_at_once(tmp_path: Path, cap: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    target = Target(hold)
    try:
        with TunnelThread(config(tmp_path, f"127.0.0.1:{target.port}", **{cap: 1})) as running, \
                connect(running.address, timeout=5) as first:
            first.sendall(b"x")
            wait_until(lambda: running.proxy.connections == 1)
            with connect(running.address, timeout=5) as second:
                second.settimeout(10)
                assert second.recv(10) == b""
            [line] = tunnel_lines(caplog)
            assert fields(line)["end"] == "refused-cap" and fields(line)["ip"] == "-"
            assert running.proxy.connections == 1
    finally:
        target.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize(("options", "end"), [
    ({"idle_timeout": 0.2}, "idle"),
    ({"max_tunnel_lifetime": 0.3}, "lifetime"),
])
def test_idle_and_old_tunnels_are_closed(tmp_path: Path, options: dict[str, float], end: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    target = Target(hold)
    try:
        with TunnelThread(config(tmp_path, f"127.0.0.1:{target.port}", **options)) as running, \
                connect(running.address, timeout=5) as sock:
            sock.settimeout(10)
            assert sock.recv(10) == b""
            [line] = tunnel_lines(caplog)
    finally:
        target.close()
    assert fields(line)["end"] == end


def test_a_dead_target_closes_the_client(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    with TunnelThread(config(tmp_path, f"127.0.0.1:{port}")) as running, \
            connect(running.address, timeout=5) as sock:
        sock.settimeout(10)
        assert sock.recv(10) == b""
        [line] = tunnel_lines(caplog)
    assert fields(line)["end"] == "connect-failed" and fields(line)["ip"] == "127.0.0.1"
    assert "cannot connect" in line
    assert [record.levelno for record in caplog.records if record.getMessage().startswith("tunnel ")] == [
        logging.WARNING]


def test_the_graceful_stop_lets_exchanges_finish_and_closes_kept_alive_tunnels(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    answer = threading.Event()

    def slow(conn: socket.socket) -> None:
        while request := conn.recv(100):
            if request == b"slow":
                answer.wait(10)
            conn.sendall(b"re:" + request)

    target = Target(slow)
    running = TunnelThread(config(tmp_path, f"127.0.0.1:{target.port}", grace_period=20.0))
    running.start()
    try:
        with connect(running.address, timeout=5) as kept, connect(running.address, timeout=5) as busy:
            kept.settimeout(10)
            busy.settimeout(10)
            kept.sendall(b"fast")
            assert kept.recv(100) == b"re:fast"   # answered: between exchanges, as a kept-alive client is
            busy.sendall(b"slow")                 # a request still in flight
            wait_until(lambda: running.proxy.connections == 2)
            stopper = threading.Thread(target=running.stop)
            stopper.start()
            assert kept.recv(100) == b""          # closed at once: the client reconnects elsewhere
            with pytest.raises(TransportError):
                connect(running.address, timeout=5).close()  # no new tunnels
            assert stopper.is_alive()             # the busy tunnel holds the stop...
            answer.set()
            assert busy.recv(100) == b"re:slow"   # ...until its answer is through
            assert busy.recv(100) == b""
            stopper.join()
    finally:
        answer.set()
        running.stop()
        target.close()
    lines = tunnel_lines(caplog, 2)
    assert [fields(line)["end"] for line in lines] == ["stop", "stop"]
    assert all("between exchanges" in line for line in lines)
    assert not (tmp_path / "tunnel.sock").exists()


def test_the_stop_lets_a_tunnel_still_resolving_through(tmp_path: Path, echo_target: Target,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No bytes relayed yet (the ClientHello waits for the target's address) is not "between exchanges"."""
    import asyncio

    from nitrokit.parent._dns import Resolved, Resolver

    release = threading.Event()

    class Held(Resolver):
        async def resolve(self, host: str) -> Resolved:
            while not release.is_set():
                await asyncio.sleep(0.01)
            return Resolved((host,), "literal")

    monkeypatch.setattr("nitrokit.parent.tunnel._SETTLE_SECONDS", 0.01)  # settled checks every 10 ms
    running = TunnelThread(config(tmp_path, f"127.0.0.1:{echo_target.port}", grace_period=20.0),
                           resolver=Held(servers=[("127.0.0.1", 53)]))
    running.start()
    try:
        with connect(running.address, timeout=5) as sock:
            sock.settimeout(10)
            sock.sendall(b"client-hello")
            wait_until(lambda: running.proxy.connections == 1)
            stopper = threading.Thread(target=running.stop)
            stopper.start()
            time.sleep(0.2)  # many settled checks while the tunnel is still resolving
            release.set()
            assert sock.recv(100) == b"client-hello"  # relayed and answered, not cut
            stopper.join()
    finally:
        release.set()
        running.stop()


def test_the_grace_period_bounds_the_stop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = Target(hold)
    running = TunnelThread(config(tmp_path, f"127.0.0.1:{target.port}", grace_period=0.5))
    running.start()
    try:
        with connect(running.address, timeout=5) as sock:
            sock.settimeout(10)
            sock.sendall(b"no answer ever")
            wait_until(lambda: running.proxy.connections == 1)
            running.stop()
            assert sock.recv(100) == b""
    finally:
        target.close()
    [line] = tunnel_lines(caplog)
    assert fields(line)["end"] == "stop" and "grace period over" in line


def test_an_ipv6_target(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        target = Target(echo, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    try:
        with TunnelThread(config(tmp_path, f"[::1]:{target.port}", ip_version="6")) as running, \
                connect(running.address, timeout=5) as sock:
            sock.settimeout(10)
            send_and_close(sock, b"six")
            assert recv_all(sock) == b"sixbye"
            [line] = tunnel_lines(caplog)
    finally:
        target.close()
    assert fields(line)["ip"] == "::1" and fields(line)["target"] == f"[::1]:{target.port}"


def test_the_credentials_channel_runs_beside_the_tunnel(tmp_path: Path, echo_target: Target) -> None:
    credentials = AwsCredentials(access_key_id="AKIDEXAMPLEEXAMPLE", secret_access_key="s3cr3t")
    tunnel_config = TunnelConfig(listen=f"unix://{tmp_path / 't.sock'}", target=f"127.0.0.1:{echo_target.port}",
                                 credentials_listen=f"unix://{tmp_path / 'c.sock'}")
    with TunnelThread(tunnel_config, credentials_source=lambda: credentials) as running:
        assert running.credentials_address is not None
        with CredentialsClient(running.credentials_address) as client:
            assert client.fetch() == credentials


def test_the_command_line(tmp_path: Path, echo_target: Target) -> None:
    from nitrokit.kms import DEFAULT_ACCESS_KEY

    with NitrokitProcess("parent", "--mode", "tunnel", "--listen", f"unix://{tmp_path / 't.sock'}",
                         "--target", f"127.0.0.1:{echo_target.port}",
                         "--credentials-listen", f"unix://{tmp_path / 'c.sock'}",
                         env=simulator_environment(), lines=2) as parent:
        assert parent.lines == [f"unix://{tmp_path / 't.sock'}", f"unix://{tmp_path / 'c.sock'}"]
        with connect(parent.lines[0], timeout=5) as sock:
            sock.settimeout(10)
            send_and_close(sock, CONTENT)
            assert recv_all(sock) == CONTENT + b"bye"
        with CredentialsClient(parent.lines[1]) as client:  # boto3's chain: here the environment's keys
            fetched = client.fetch()
        assert fetched.access_key_id == DEFAULT_ACCESS_KEY.access_key_id
        assert fetched.secret_access_key == DEFAULT_ACCESS_KEY.secret_access_key
        assert parent.stop() == 0
        log = parent.stderr_text(100_000)
    assert "end=client-closed" in log
    assert CONTENT.decode() not in log and DEFAULT_ACCESS_KEY.secret_access_key not in log


@pytest.mark.parametrize(("args", "words"), [
    (["--mode", "tunnel", "--operations", "Decrypt"], "--operations is not an option of --mode tunnel"),
    (["--target", "127.0.0.1:1"], "--target is not an option of --mode relay"),
    (["--mode", "tunnel", "--target", "127.0.0.1:1", "--allow-list", "/nonexistent.yaml"], "cannot read"),
    (["--mode", "tunnel", "--target", "127.0.0.1:0"], "port"),
    (["--mode", "tunnel", "--target", "https://kms.eu-west-1.amazonaws.com"], "--target must be HOST:PORT"),
    (["--mode", "tunnel", "--target", "kms.eu-west-1.amazonaws.com"], "--target must be HOST:PORT"),
    (["--mode", "tunnel", "--target", "127.0.0.1:1", "--buffer-size", "1"], "buffer_size"),
    (["--mode", "tunnel", "--target", "[::1]:1", "--ip-version", "4"], "an IPv6 address, not IPv4"),
    (["--mode", "tunnel", "--target", "127.0.0.1:1", "--dns-server", "resolver.example"], "not an IP address"),
])
def test_usage_errors(args: list[str], words: str) -> None:
    import subprocess
    import sys

    env = simulator_environment()
    result = subprocess.run([sys.executable, "-m", "nitrokit", "parent", *args], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr


@pytest.mark.parametrize(("region", "host"), [("eu-west-1", "kms.eu-west-1.amazonaws.com"),
                                              ("cn-north-1", "kms.cn-north-1.amazonaws.com.cn")])
def test_the_default_target_is_the_regions_kms_endpoint(region: str, host: str) -> None:
    from nitrokit.kms_api import kms_endpoint_host

    tunnel_config = TunnelConfig(region=region, credentials_listen=None)
    assert (tunnel_config.target_host, tunnel_config.target_port) == (host, 443) == (kms_endpoint_host(region), 443)


def test_the_region_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "cn-northwest-1")
    assert TunnelConfig(credentials_listen=None).target_host == "kms.cn-northwest-1.amazonaws.com.cn"


@pytest.mark.parametrize("target", [None, "127.0.0.1:443"])
def test_a_region_that_is_not_one_is_a_usage_error(target: str | None) -> None:
    from nitrokit.errors import UsageError

    with pytest.raises(UsageError, match="not an AWS region name"):
        TunnelConfig(target=target, region="NOT A REGION", credentials_listen=None)


def test_the_allow_list_types_are_public() -> None:
    import nitrokit.parent.tunnel as tunnel
    from nitrokit.parent._allowlist import AllowList, AllowListError

    assert {"AllowList", "AllowListError"} <= set(tunnel.__all__)
    assert (tunnel.AllowList, tunnel.AllowListError) == (AllowList, AllowListError)
