"""Transport addresses: parsing in one place, typed errors naming what is wrong, real sockets to each form."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest

from nitrokit.errors import UsageError
from nitrokit.wire import (
    VMADDR_CID_ANY,
    AddressError,
    TcpAddress,
    TransportError,
    TransportUnavailableError,
    UnixAddress,
    VsockAddress,
    WireTimeoutError,
    bound_address,
    connect,
    listen,
    open_connection,
    parse_address,
)
from nitrokit.wire.address import is_host_name


@pytest.mark.parametrize(("text", "expected"), [
    ("vsock://3:8000", VsockAddress(cid=3, port=8000)),
    ("vsock://any:8000", VsockAddress(cid=VMADDR_CID_ANY, port=8000)),
    ("vsock://ANY:1", VsockAddress(cid=VMADDR_CID_ANY, port=1)),
    ("vsock://16:4294967295", VsockAddress(cid=16, port=4294967295)),
    ("vsock://4294967295:5", VsockAddress(cid=VMADDR_CID_ANY, port=5)),
    ("unix:///run/nitrokit/parent.sock", UnixAddress(path="/run/nitrokit/parent.sock")),
    ("tcp://127.0.0.1:0", TcpAddress(host="127.0.0.1", port=0)),
    ("tcp://localhost:8000", TcpAddress(host="localhost", port=8000)),
    ("tcp://kms.eu-west-1.amazonaws.com:443", TcpAddress(host="kms.eu-west-1.amazonaws.com", port=443)),
    ("tcp://[::1]:65535", TcpAddress(host="::1", port=65535)),
    ("TCP://127.0.0.1:1", TcpAddress(host="127.0.0.1", port=1)),
])
def test_valid_addresses_parse_to_typed_values(text, expected):
    address = parse_address(text)
    assert address == expected
    assert parse_address(str(address)) == address  # the canonical text parses back to the same value
    assert parse_address(address) is address


def test_canonical_text():
    assert str(parse_address("vsock://4294967295:8000")) == "vsock://any:8000"
    assert str(parse_address("tcp://[::1]:80")) == "tcp://[::1]:80"
    assert str(parse_address("unix:///tmp/x")) == "unix:///tmp/x"


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    (" tcp://a:1", "spaces"),
    ("tcp://a:1\n", "spaces"),
    ("localhost:8000", "no scheme"),
    ("http://example.com:80", "unknown scheme 'http'"),
    ("vsock://3", "vsock://CID:PORT"),
    ("vsock://:8000", "vsock://CID:PORT"),
    ("vsock://three:8000", "CID 'three'"),
    ("vsock://-1:8000", "CID '-1'"),
    ("vsock://4294967296:8000", "CID '4294967296'"),
    ("vsock://3:4294967296", "port '4294967296'"),
    ("vsock://3:0x10", "port '0x10'"),
    ("vsock://3:", "port ''"),
    ("unix://relative/path", "absolute path"),
    ("unix://", "absolute path"),
    ("unix:///" + "x" * 200, "over the system limit of 107"),
    ("tcp://127.0.0.1", "tcp://HOST:PORT"),
    ("tcp://:80", "tcp://HOST:PORT"),
    ("tcp://host:65536", "port '65536'"),
    ("tcp://host:+80", "port '+80'"),
    ("tcp://host:http", "port 'http'"),
    ("tcp://::1:80", "in brackets"),
    ("tcp://[127.0.0.1]:80", "not an IPv6 address"),
    ("tcp://[::1]80", "tcp://[IPv6]:PORT"),
    ("tcp://[::1", "tcp://[IPv6]:PORT"),
    ("tcp://bad_host:80", "not a valid host name"),
    ("tcp://-bad.example:80", "not a valid host name"),
    ("tcp://" + "a" * 300 + ":80", "not a valid host name"),
    ("tcp://" + "a" * 2000 + ":80", "over the limit of 1024"),
])
def test_invalid_addresses_raise_typed_errors_naming_the_problem(text, fragment):
    with pytest.raises(AddressError) as info:
        parse_address(text)
    assert fragment in str(info.value)
    assert isinstance(info.value, UsageError)  # the CLI reports it as a usage error (exit 2)
    assert not info.value.retryable


def test_non_string_address_is_refused():
    with pytest.raises(AddressError, match="must be a string"):
        parse_address(8000)  # type: ignore[arg-type]


def test_socket_family_selection(monkeypatch):
    assert parse_address("unix:///tmp/x").family == socket.AF_UNIX
    assert parse_address("tcp://127.0.0.1:1").family == socket.AF_INET
    assert parse_address("tcp://[::1]:1").family == socket.AF_INET6
    assert parse_address("tcp://localhost:1").family == socket.AF_UNSPEC  # decided by name resolution
    vsock = parse_address("vsock://3:8000")
    assert vsock.sockaddr == (3, 8000)
    monkeypatch.setattr(socket, "AF_VSOCK", 40, raising=False)
    assert vsock.family == 40
    monkeypatch.delattr(socket, "AF_VSOCK")
    # Still parses (a config file can name vsock anywhere); using it is what fails, with a typed error.
    assert parse_address("vsock://3:8000") == vsock
    with pytest.raises(TransportUnavailableError, match=r"no socket\.AF_VSOCK"):
        _ = vsock.family
    with pytest.raises(TransportUnavailableError):
        connect(vsock, timeout=1.0)
    with pytest.raises(TransportUnavailableError):
        listen(vsock)


# -- real sockets -----------------------------------------------------------------------------------------------


def _echo_once(server: socket.socket) -> None:
    server.setblocking(True)
    conn, _ = server.accept()
    with conn:
        conn.sendall(conn.recv(16))


@pytest.mark.parametrize("form", ["unix", "tcp"])
def test_listen_and_connect(tmp_path, form):
    requested = f"unix://{tmp_path}/s.sock" if form == "unix" else "tcp://127.0.0.1:0"
    server = listen(requested)
    with server:
        address = bound_address(server, requested)
        if form == "tcp":
            assert isinstance(address, TcpAddress) and address.port != 0
        else:
            assert address == parse_address(requested)
        thread = threading.Thread(target=_echo_once, args=(server,))
        thread.start()
        with connect(address, timeout=5.0) as client:
            client.sendall(b"ping")
            assert client.recv(16) == b"ping"
        thread.join(5)


def test_async_open_connection(tmp_path):
    async def main() -> bytes:
        requested = f"unix://{tmp_path}/a.sock"
        server_sock = listen(requested)

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(4))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, sock=server_sock)
        async with server:
            reader, writer = await open_connection(requested, timeout=5.0)
            writer.write(b"pong")
            data = await reader.readexactly(4)
            writer.close()
            tcp_sock = listen("tcp://127.0.0.1:0")
            tcp = await asyncio.start_server(echo, sock=tcp_sock)
            async with tcp:
                reader, writer = await open_connection(bound_address(tcp_sock, "tcp://127.0.0.1:0"), timeout=5.0)
                writer.write(b"ping")
                data += await reader.readexactly(4)
                writer.close()
        return data

    assert asyncio.run(main()) == b"pongping"


def test_connect_refused_is_a_retryable_transport_error(tmp_path):
    with pytest.raises(TransportError, match="cannot connect") as info:
        connect(f"unix://{tmp_path}/nobody.sock", timeout=1.0)
    assert info.value.retryable
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(TransportError):
        connect(f"tcp://127.0.0.1:{port}", timeout=1.0)

    async def refused() -> None:
        await open_connection(f"tcp://127.0.0.1:{port}", timeout=1.0)

    with pytest.raises(TransportError):
        asyncio.run(refused())


def test_connect_times_out_with_a_typed_error():
    # A TCP listener that never accepts and whose backlog is full: Linux drops further SYNs, so connect hangs.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        held = [socket.create_connection(server.getsockname(), timeout=2)]
        try:
            with pytest.raises(WireTimeoutError, match=r"longer than 0\.3 s"):
                for _ in range(4):  # the first may still fit in the queue
                    held.append(connect(address, timeout=0.3))
        finally:
            for sock in held:
                sock.close()


def test_connect_to_port_zero_is_refused():
    with pytest.raises(AddressError, match="port 0"):
        connect("tcp://127.0.0.1:0", timeout=1.0)


def test_unresolvable_host_is_an_address_error():
    with pytest.raises(AddressError, match="cannot resolve"):
        connect("tcp://nonexistent.invalid:80", timeout=1.0)


def test_timeout_must_be_positive():
    with pytest.raises(UsageError, match="timeout"):
        connect("tcp://127.0.0.1:1", timeout=0)


def test_listen_replaces_a_stale_unix_socket_but_not_a_live_one_or_a_file(tmp_path):
    path = tmp_path / "p.sock"
    address = f"unix://{path}"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    live = listen(address)
    try:
        with pytest.raises(AddressError, match="another process is listening"):
            listen(address)
    finally:
        live.close()
    regular = tmp_path / "file"
    regular.write_bytes(b"not a socket")
    with pytest.raises(AddressError, match="not a socket"):
        listen(f"unix://{regular}")
    assert regular.read_bytes() == b"not a socket"


def test_listen_on_a_busy_tcp_port_is_an_address_error():
    first = listen("tcp://127.0.0.1:0")
    try:
        port = first.getsockname()[1]
        with pytest.raises(AddressError, match="cannot listen"):
            listen(f"tcp://127.0.0.1:{port}")
    finally:
        first.close()


def test_listen_in_a_missing_directory_is_an_address_error(tmp_path):
    with pytest.raises(AddressError, match="cannot listen"):
        listen(f"unix://{tmp_path}/missing/dir/p.sock")


# -- real vsock, where the kernel has it -----------------------------------------------------------------------


def _vsock_socket_or_skip() -> None:
    if not hasattr(socket, "AF_VSOCK"):
        pytest.skip("this Python has no socket.AF_VSOCK (not Linux?)")
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except OSError as exc:
        pytest.skip(f"the kernel has no vsock support here ({exc.strerror})")


def test_vsock_listen_binds_any_cid():
    _vsock_socket_or_skip()
    requested = VsockAddress(cid=VMADDR_CID_ANY, port=0xFFFFFFFF)  # VMADDR_PORT_ANY: the kernel picks one
    try:
        server = listen(requested)
    except AddressError as exc:
        pytest.skip(f"cannot bind a vsock socket here: {exc}")
    with server:
        bound = bound_address(server, requested)
        assert isinstance(bound, VsockAddress) and bound.cid == VMADDR_CID_ANY and bound.port != 0xFFFFFFFF
        assert server.family == socket.AF_VSOCK


def test_vsock_round_trip_over_loopback():
    _vsock_socket_or_skip()
    if not Path("/sys/module/vsock_loopback").exists():
        pytest.skip("the vsock_loopback kernel module is not loaded (modprobe vsock_loopback): no local vsock peer")
    server = listen(VsockAddress(cid=VMADDR_CID_ANY, port=0xFFFFFFFF))
    with server:
        port = server.getsockname()[1]
        thread = threading.Thread(target=_echo_once, args=(server,))
        thread.start()
        with connect(f"vsock://1:{port}", timeout=5.0) as client:
            client.sendall(b"vsock")
            assert client.recv(16) == b"vsock"
        thread.join(5)



@pytest.mark.parametrize(("text", "expected"), [
    ("kms.us-east-1.amazonaws.com", True), ("localhost", True), ("kms.x1.example.", True), ("a-b.c9", True),
    ("127.1", False), ("0x7f.1", False), ("010.0.0.1", False), ("2130706433", False), ("1.2.3.0x4", False),
    ("-bad.example", False), ("a..b", False), ("", False), ("x" * 64 + ".example", False),
])
def test_one_host_name_rule(text: str, expected: bool) -> None:
    """The addresses, the tunnel's allow-list and target, and the enclave's KMS host share this rule: a name whose
    last label is numeric is IPv4 shorthand to getaddrinfo and a name to a nameserver, so it is none of them."""
    assert is_host_name(text) is expected
    if not expected and text:
        with pytest.raises(AddressError):
            parse_address(f"tcp://{text}:80")
    assert parse_address("tcp://127.0.0.1:80") == TcpAddress("127.0.0.1", 80)
