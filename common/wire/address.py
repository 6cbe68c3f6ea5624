"""Transport addresses: ``vsock://CID:PORT``, ``unix:///path`` and ``tcp://HOST:PORT``, parsed in one place.

vsock is the production transport between an enclave and its parent instance (the parent is CID 3 as seen
from an enclave; a listener uses CID ``any``); Unix and TCP sockets carry the same protocol for tests and
local use. Every command that takes an address parses it with :func:`parse_address`::

    address = parse_address("vsock://3:8000")        # VsockAddress(cid=3, port=8000)
    sock = connect(address, timeout=5.0)             # blocking socket
    server = listen(parse_address("tcp://127.0.0.1:0"))
    reader, writer = await open_connection(address, timeout=5.0)

Invalid text raises :class:`~nitrokit.wire.errors.AddressError` naming what is wrong; a valid vsock address on
a system without ``socket.AF_VSOCK`` raises :class:`~nitrokit.wire.errors.TransportUnavailableError` when a
socket is made, not when it is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import re
import select
import socket
import stat
from dataclasses import dataclass
from typing import Any

from nitrokit.errors import UsageError
from nitrokit.wire.errors import AddressError, TransportError, TransportUnavailableError, WireTimeoutError

__all__ = [
    "VMADDR_CID_ANY",
    "VMADDR_CID_HOST",
    "VMADDR_CID_PARENT",
    "Address",
    "TcpAddress",
    "UnixAddress",
    "VsockAddress",
    "bound_address",
    "closed_while_idle",
    "connect",
    "is_host_name",
    "is_ipv4_literal",
    "listen",
    "open_connection",
    "parse_address",
]

VMADDR_CID_ANY = 0xFFFFFFFF
VMADDR_CID_HOST = 2
#: the parent instance, as an enclave sees it
VMADDR_CID_PARENT = 3

_MAX_ADDRESS_LENGTH = 1024
# sun_path is 108 bytes on Linux, one of them the terminating NUL.
_MAX_UNIX_PATH_BYTES = 107
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
# A last label of digits (or 0x...) makes getaddrinfo read the name as IPv4 shorthand (127.1, 010.0.0.1 as
# 8.0.0.1) while a nameserver reads it as a name: where it leads would depend on which was asked.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_DECIMAL = re.compile(r"[0-9]{1,10}")
_FORMS = "vsock://CID:PORT, unix:///path or tcp://HOST:PORT"

#: Pending connections a listener holds (the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class VsockAddress:
    """A vsock address. ``cid`` may be :data:`VMADDR_CID_ANY` (written ``any``) to listen on every CID."""

    cid: int
    port: int

    @property
    def family(self) -> int:
        family = getattr(socket, "AF_VSOCK", None)
        if family is None:
            raise TransportUnavailableError(f"{self}: vsock is not available here (Python has no socket.AF_VSOCK)")
        return int(family)

    @property
    def sockaddr(self) -> tuple[int, int]:
        return (self.cid, self.port)

    def __str__(self) -> str:
        cid = "any" if self.cid == VMADDR_CID_ANY else str(self.cid)
        return f"vsock://{cid}:{self.port}"


@dataclass(frozen=True)
class UnixAddress:
    """A Unix-domain stream socket at an absolute filesystem path."""

    path: str

    @property
    def family(self) -> int:
        return int(socket.AF_UNIX)

    @property
    def sockaddr(self) -> str:
        return self.path

    def __str__(self) -> str:
        return f"unix://{self.path}"


@dataclass(frozen=True)
class TcpAddress:
    """A TCP address: an IPv4 or IPv6 literal or a host name, and a port (0 = any free port, to listen)."""

    host: str
    port: int

    @property
    def family(self) -> int:
        try:
            return int(socket.AF_INET6) if ipaddress.ip_address(self.host).version == 6 else int(socket.AF_INET)
        except ValueError:  # a host name: the family comes from name resolution
            return int(socket.AF_UNSPEC)

    @property
    def sockaddr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


Address = VsockAddress | UnixAddress | TcpAddress


def parse_address(text: str | Address) -> Address:
    """Parse ``vsock://CID:PORT`` (CID decimal or ``any``), ``unix:///abs/path`` or ``tcp://HOST:PORT``.

    An :data:`Address` passes through unchanged, so APIs can take either.
    """
    if isinstance(text, VsockAddress | UnixAddress | TcpAddress):
        return text
    if not isinstance(text, str):
        raise AddressError(f"an address must be a string, not {type(text).__name__}")
    if len(text) > _MAX_ADDRESS_LENGTH:
        raise AddressError(f"address is {len(text)} characters long, over the limit of {_MAX_ADDRESS_LENGTH}")
    if not text or text != text.strip() or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise AddressError(f"address {text!r} is empty or contains spaces or control characters")
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise AddressError(f"address {text!r} has no scheme: expected {_FORMS}")
    scheme = scheme.lower()
    if scheme == "vsock":
        return _parse_vsock(text, rest)
    if scheme == "unix":
        return _parse_unix(text, rest)
    if scheme == "tcp":
        return _parse_tcp(text, rest)
    raise AddressError(f"address {text!r} has unknown scheme {scheme!r}: expected {_FORMS}")


def _parse_vsock(text: str, rest: str) -> VsockAddress:
    cid_text, sep, port_text = rest.rpartition(":")
    if not sep or not cid_text:
        raise AddressError(f"vsock address {text!r} must be vsock://CID:PORT (CID a number or 'any')")
    cid = VMADDR_CID_ANY if cid_text.lower() == "any" else _parse_number(text, cid_text, "CID", 0xFFFFFFFF)
    return VsockAddress(cid=cid, port=_parse_number(text, port_text, "port", 0xFFFFFFFF))


def _parse_unix(text: str, path: str) -> UnixAddress:
    if not path.startswith("/"):
        raise AddressError(f"unix address {text!r} must name an absolute path: unix:///path/to/socket")
    if "\x00" in path:
        raise AddressError(f"unix address {text!r} contains a NUL character")
    size = len(os.fsencode(path))
    if size > _MAX_UNIX_PATH_BYTES:
        raise AddressError(f"unix socket path is {size} bytes, over the system limit of {_MAX_UNIX_PATH_BYTES}")
    return UnixAddress(path=path)


def _parse_tcp(text: str, rest: str) -> TcpAddress:
    if rest.startswith("["):
        host, sep, port_part = rest[1:].partition("]")
        if not sep or not port_part.startswith(":"):
            raise AddressError(f"tcp address {text!r} must be tcp://[IPv6]:PORT")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError(host)
        except ValueError:
            raise AddressError(f"tcp address {text!r}: {host!r} is not an IPv6 address") from None
        port_text = port_part[1:]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep or not host:
            raise AddressError(f"tcp address {text!r} must be tcp://HOST:PORT")
        if ":" in host:
            raise AddressError(f"tcp address {text!r}: write an IPv6 host in brackets, tcp://[{host}]:PORT")
        if not (is_ipv4_literal(host) or is_host_name(host)):
            raise AddressError(f"tcp address {text!r}: {host!r} is not a valid host name or IPv4 address")
    return TcpAddress(host=host, port=_parse_number(text, port_text, "port", 65535))


def is_ipv4_literal(text: str) -> bool:
    """Whether ``text`` is an IPv4 address in dotted-quad form (the only form ``ipaddress`` reads)."""
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def is_host_name(text: str) -> bool:
    """Whether ``text`` is a DNS host name (letters, digits, hyphens; labels of 1..63; 253 characters at most,
    a trailing dot allowed) that no resolver can take for an IPv4 address: its last label is not numeric."""
    name = text.removesuffix(".")
    return (len(name) <= 253 and _HOSTNAME.fullmatch(text) is not None
            and _NUMERIC_LABEL.fullmatch(name.rpartition(".")[2]) is None)


def _parse_number(text: str, value: str, what: str, maximum: int) -> int:
    if not _DECIMAL.fullmatch(value) or int(value) > maximum:
        raise AddressError(f"address {text!r}: {what} {value!r} is not a number from 0 to {maximum}")
    return int(value)


# -- sockets ----------------------------------------------------------------------------------------------------


def _new_socket(address: Address, family: int | None = None) -> socket.socket:
    try:
        return socket.socket(family if family is not None else address.family, socket.SOCK_STREAM)
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT, errno.ENODEV):
            raise TransportUnavailableError(f"{address}: this system cannot create such a socket ({exc.strerror})"
                                            ) from None
        raise


def _tcp_targets(address: TcpAddress, *, passive: bool) -> list[tuple[int, Any]]:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE if passive else 0)
    except socket.gaierror as exc:
        raise AddressError(f"{address}: cannot resolve host {address.host!r} ({exc.strerror})") from None
    return [(int(family), sockaddr) for family, _, _, _, sockaddr in infos]


def connect(address: str | Address, *, timeout: float) -> socket.socket:
    """Connect to ``address`` within ``timeout`` seconds and return the (blocking) connected socket.

    Raises :class:`~nitrokit.wire.errors.WireTimeoutError` on timeout and
    :class:`~nitrokit.wire.errors.TransportError` if the connection is refused or fails.
    """
    address = parse_address(address)
    _check_timeout(timeout)
    if isinstance(address, TcpAddress):
        if address.port == 0:
            raise AddressError(f"{address}: cannot connect to port 0")
        targets = _tcp_targets(address, passive=False)
    else:
        targets = [(address.family, address.sockaddr)]
    last: OSError | None = None
    for family, sockaddr in targets:
        sock = _new_socket(address, family)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except TimeoutError:
            sock.close()
            raise WireTimeoutError(f"connecting to {address} took longer than {timeout:g} s") from None
        except OSError as exc:
            sock.close()
            last = exc
            continue
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    reason = last.strerror if last is not None and last.strerror else str(last)
    raise TransportError(f"cannot connect to {address}: {reason}")


async def open_connection(
    address: str | Address, *, timeout: float, limit: int = 2**16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """The asyncio form of :func:`connect`: a connected ``(reader, writer)`` pair, within ``timeout`` seconds."""
    address = parse_address(address)
    _check_timeout(timeout)
    loop = asyncio.get_running_loop()
    if isinstance(address, TcpAddress):
        if address.port == 0:
            raise AddressError(f"{address}: cannot connect to port 0")
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(address.host, address.port, limit=limit)
        except TimeoutError:
            raise WireTimeoutError(f"connecting to {address} took longer than {timeout:g} s") from None
        except socket.gaierror as exc:
            raise AddressError(f"{address}: cannot resolve host {address.host!r} ({exc.strerror})") from None
        except OSError as exc:
            raise TransportError(f"cannot connect to {address}: {exc.strerror or exc}") from None
        return reader, writer
    sock = _new_socket(address)
    try:
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, address.sockaddr)
        return await asyncio.open_connection(sock=sock, limit=limit)
    except TimeoutError:
        sock.close()
        raise WireTimeoutError(f"connecting to {address} took longer than {timeout:g} s") from None
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot connect to {address}: {exc.strerror or exc}") from None
    except BaseException:
        sock.close()
        raise


def listen(address: str | Address, *, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A bound, listening, non-blocking socket for ``address`` (hand it to ``asyncio.start_server(sock=...)``).

    ``backlog`` leaves room for a burst of enclaves connecting at once: a full Unix-socket backlog fails
    connect() with EAGAIN at once instead of waiting (the kernel caps the value at net.core.somaxconn).

    TCP port 0 picks a free port (see :func:`bound_address`). A Unix path that holds a *stale* socket (one
    nobody listens on) is replaced; any other existing file is an error.
    """
    address = parse_address(address)
    if isinstance(address, TcpAddress):
        family, sockaddr = _tcp_targets(address, passive=True)[0]
    else:
        family, sockaddr = address.family, address.sockaddr
    if isinstance(address, UnixAddress):
        _remove_stale_unix_socket(address)
    sock = _new_socket(address, family)
    try:
        if isinstance(address, TcpAddress):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.ENOENT, errno.ENODEV):
            raise AddressError(f"cannot listen on {address}: {exc.strerror}") from None
        raise
    return sock


def bound_address(sock: socket.socket, requested: str | Address) -> Address:
    """The address ``sock`` is actually bound to: the real port when 0 was asked, in the requested form."""
    requested = parse_address(requested)
    name = sock.getsockname()
    if isinstance(requested, VsockAddress):
        return VsockAddress(cid=requested.cid, port=int(name[1]))
    if isinstance(requested, UnixAddress):
        return requested
    return TcpAddress(host=str(name[0]), port=int(name[1]))


def _remove_stale_unix_socket(address: UnixAddress) -> None:
    try:
        mode = os.lstat(address.path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AddressError(f"cannot listen on {address}: the path exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(address.path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address.path)
        return
    except OSError:
        return  # let bind() report it
    finally:
        probe.close()
    raise AddressError(f"cannot listen on {address}: another process is listening there")


def _check_timeout(timeout: float) -> None:
    if not timeout > 0:
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")


def closed_while_idle(sock: socket.socket) -> bool:
    """Whether a kept-alive connection, idle since its last answer, can no longer be used: the peer closed it
    (its idle timeout, a restart) or sent bytes nobody asked for. Nothing is due on an idle connection, so
    anything readable (EOF, a TLS close_notify, stray bytes) means start afresh. Works for TLS sockets too
    (``pending()``: bytes ssl has already decrypted), and never blocks or reads."""
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():
        return True
    poller = select.poll()
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # closed, or no longer a socket
        return True
