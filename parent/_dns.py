"""The tunnel's resolver: the target's addresses, re-resolved when their DNS TTL runs out.

vsock-proxy resolved its target once (or on a fixed timer) and kept connecting to an address KMS had long
stopped using. ``getaddrinfo`` hides TTLs, so this asks the system's nameservers (``nameserver`` lines of
/etc/resolv.conf, or the ``servers`` given: ``--dns-server``) itself, with a small DNS client:

- A and/or AAAA queries per ``ip_version`` (for ``any``: both at once, IPv4 addresses first, as every VPC
  routes them; once one family has answered with addresses the other gets :data:`RESOLUTION_DELAY` more,
  then the answer in hand is used and cached for its own TTL, so a resolver that drops AAAA costs 50 ms), a
  random 16-bit id per query, the answer's id, question and flags checked (an answer that does not match is
  ignored, as a spoof would be), CNAME chains followed inside the answer (at most :data:`MAX_CNAME_HOPS`),
  compression pointers only backwards and at most :data:`MAX_POINTERS` per name (no loops), a truncated
  answer asked again over TCP, every try within ``timeout``, at most ``attempts`` rounds over at most three
  servers, answers at most 64 KiB and :data:`MAX_RECORDS` records;
- addresses cached until their smallest TTL (clamped to ``min_ttl`` .. ``max_ttl``); when a re-resolution
  fails, the last good answer is served for at most ``stale_grace`` more seconds (logged), then the failure
  is the caller's (:class:`DnsError`);
- IP literals are not resolved; names the hosts file answers (``localhost``, /etc/hosts) go through
  ``getaddrinfo`` and are re-resolved every ``hosts_interval`` seconds. So are all names when no nameserver is
  configured.

Search domains and ``ndots`` are not applied: the target is a full name (``kms.<region>.amazonaws.com``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from nitrokit.errors import NitrokitError, UsageError
from nitrokit.text import escaped
from nitrokit.wire.server import check_count, check_seconds

__all__ = ["MAX_CNAME_HOPS", "MAX_POINTERS", "MAX_RECORDS", "RESOLUTION_DELAY", "DnsError", "IpVersion",
           "Resolved", "Resolver", "parse_dns_server", "system_nameservers"]

IpVersion = Literal["any", "4", "6"]
DNS_PORT = 53
MAX_CNAME_HOPS = 8
MAX_POINTERS = 16
MAX_RECORDS = 256
MAX_SERVERS = 3  # glibc's MAXNS
_MAX_UDP_ANSWER = 4096
_MAX_TCP_ANSWER = 65535
_MAX_HOSTS_FILE_BYTES = 1 << 20
_MAX_CACHE = 16
#: With ip_version "any", how long the other family's answer is waited for once one has addresses (RFC 8305's
#: Resolution Delay).
RESOLUTION_DELAY = 0.05
_TYPE_A, _TYPE_CNAME, _TYPE_AAAA = 1, 5, 28
_CLASS_IN = 1
_RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}

logger = logging.getLogger("nitrokit.parent")


class DnsError(NitrokitError):
    """The target's addresses could not be found (the message says why; never retried here beyond the bounds)."""


@dataclass(frozen=True)
class Resolved:
    """A resolution: the addresses in the order to try them, and where they came from."""

    addresses: tuple[str, ...]
    #: "literal", "hosts" (getaddrinfo), "dns", or "stale" (a past DNS answer served after a failure)
    source: str


def parse_dns_server(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (an IP literal; IPv6 as ``[addr]:port`` when a port is given) -> (ip, port)."""
    host, port = text, DNS_PORT
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"DNS server {escaped(text, 80)!r} must be IP, IP:PORT or [IPv6]:PORT")
        host = inside
        if rest:
            port = _port(text, rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(text, port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"DNS server {escaped(text, 80)!r}: {escaped(host, 80)!r} is not an IP address") from None
    return host, port


def _port(text: str, value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise UsageError(f"DNS server {escaped(text, 80)!r}: the port must be from 1 to 65535")
    return int(value)


def system_nameservers(path: str = "/etc/resolv.conf") -> tuple[tuple[str, int], ...]:
    """The ``nameserver`` lines of ``path`` (at most three, as glibc reads); none when it is missing."""
    try:
        with open(path, "rb") as file:
            text = file.read(_MAX_HOSTS_FILE_BYTES).decode("utf-8", "replace")
    except OSError:
        return ()
    servers: list[tuple[str, int]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and len(servers) < MAX_SERVERS:
            address = fields[1]  # a link-local server keeps its zone (fe80::1%eth0): the socket needs it
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(address)
                servers.append((address, DNS_PORT))
    return tuple(servers)


def _in_hosts_file(host: str, path: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        with open(path, "rb") as file:
            text = file.read(_MAX_HOSTS_FILE_BYTES).decode("utf-8", "replace")
    except OSError:
        return False
    for line in text.splitlines():
        names = line.partition("#")[0].split()[1:]
        if any(name.lower().removesuffix(".") == host for name in names):
            return True
    return False


@dataclass
class _Entry:
    addresses: tuple[str, ...]
    source: str
    expires: float
    stale_until: float


class Resolver:
    """Resolve host names for the tunnel (see the module docstring); one query at a time per name, its answer
    or its failure shared by the callers that waited for it.

    ``clock`` is the monotonic clock the cache uses (tests pass their own to step over TTLs).
    """

    def __init__(
        self, *, ip_version: IpVersion = "any", servers: Sequence[tuple[str, int]] | None = None,
        timeout: float = 2.0, attempts: int = 2, min_ttl: float = 1.0, max_ttl: float = 3600.0,
        stale_grace: float = 300.0, hosts_interval: float = 30.0, resolv_conf: str = "/etc/resolv.conf",
        hosts_file: str = "/etc/hosts", clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ip_version not in ("any", "4", "6"):
            raise UsageError(f"ip_version must be any, 4 or 6, not {ip_version!r}")
        check_count("attempts", attempts, 1, 10)
        for name, value in (("timeout", timeout), ("max_ttl", max_ttl), ("stale_grace", stale_grace),
                            ("hosts_interval", hosts_interval)):
            check_seconds(name, value)
        if not isinstance(min_ttl, int | float) or not 0 <= min_ttl <= max_ttl:
            raise UsageError("min_ttl must be at least 0 and at most max_ttl")
        self.ip_version: IpVersion = ip_version
        self.servers = tuple(servers)[:MAX_SERVERS] if servers else system_nameservers(resolv_conf)
        self.timeout = timeout
        self.attempts = attempts
        self.min_ttl, self.max_ttl = min_ttl, max_ttl
        self.stale_grace = stale_grace
        self.hosts_interval = hosts_interval
        self.hosts_file = hosts_file
        self.clock = clock
        self._cache: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Lookups finished so far, and each name's last failure (with its number) while it has no answer:
        # callers that waited for a lookup get its failure rather than asking again, one after the other.
        self._lookups = 0
        self._failed: dict[str, tuple[int, DnsError]] = {}

    async def resolve(self, host: str) -> Resolved:
        """The addresses of ``host`` to connect to, in order; :class:`DnsError` if there are none."""
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            if self.ip_version != "any" and str(literal.version) != self.ip_version:
                raise DnsError(f"{host} is an IPv{literal.version} address, and only IPv{self.ip_version} is allowed")
            return Resolved((str(literal),), "literal")
        name = host.lower().removesuffix(".")
        entry = self._cache.get(name)
        if entry is not None and self.clock() < entry.expires:
            return Resolved(entry.addresses, entry.source)
        lock = self._locks.setdefault(name, asyncio.Lock())
        waited_from = self._lookups
        async with lock:
            entry = self._cache.get(name)
            now = self.clock()
            if entry is not None and now < entry.expires:  # another connection resolved it meanwhile
                return Resolved(entry.addresses, entry.source)
            failed = self._failed.get(name)
            if failed is not None and failed[0] > waited_from:  # the lookup this caller waited for failed
                raise type(failed[1])(str(failed[1]))
            try:
                addresses, ttl, source = await self._lookup(name)
            except DnsError as exc:
                self._lookups += 1
                if entry is None or now >= entry.stale_until:
                    self._failed.pop(name, None)
                    if len(self._failed) >= _MAX_CACHE:
                        del self._failed[next(iter(self._failed))]
                    self._failed[name] = (self._lookups, exc)
                    raise
                # Try again soon, not on every connection: at most once per min_ttl (and a second at least).
                entry.expires = min(entry.stale_until, now + max(1.0, self.min_ttl))
                logger.warning("dns %s: %s; serving the last good answer (%s) for at most %.0f s more", name,
                               escaped(str(exc), 300), ",".join(entry.addresses), entry.stale_until - now)
                return Resolved(entry.addresses, "stale")
            self._lookups += 1
            self._failed.pop(name, None)
            now = self.clock()
            expires = now + min(max(ttl, self.min_ttl), self.max_ttl)
            if len(self._cache) >= _MAX_CACHE and name not in self._cache:
                oldest = next(iter(self._cache))
                del self._cache[oldest]
                if not self._locks[oldest].locked():
                    del self._locks[oldest]
            self._cache[name] = _Entry(addresses, source, expires, expires + self.stale_grace)
            if entry is None or entry.addresses != addresses:
                logger.info("dns %s: %s (%s, valid %.0f s)", name, ",".join(addresses), source, expires - now)
            return Resolved(addresses, source)

    async def _lookup(self, name: str) -> tuple[tuple[str, ...], float, str]:
        if not self.servers or _in_hosts_file(name, self.hosts_file):
            return await self._getaddrinfo(name), self.hosts_interval, "hosts"
        kinds = {"4": (_TYPE_A,), "6": (_TYPE_AAAA,), "any": (_TYPE_A, _TYPE_AAAA)}[self.ip_version]
        results = await self._query_families(name, kinds)
        addresses: list[str] = []
        ttls: list[float] = []
        errors: list[str] = []
        for result in results:
            if isinstance(result, DnsError):
                errors.append(str(result))
            elif isinstance(result, BaseException):
                raise result
            elif result is not None and result[0]:
                addresses.extend(result[0])
                ttls.append(result[1])
        if not addresses:
            raise DnsError("; ".join(errors) or f"no {'/'.join(_kind_name(kind) for kind in kinds)} record for {name}")
        return tuple(dict.fromkeys(addresses)), min(ttls), "dns"

    async def _query_families(self, name: str, kinds: tuple[int, ...]
                              ) -> list[tuple[tuple[str, ...], float] | BaseException | None]:
        """Each kind's answer (or its failure) in the order of ``kinds``. Once one has answered with addresses,
        the others get :data:`RESOLUTION_DELAY` more (RFC 8305), then are dropped (None): a resolver that never
        answers AAAA must not hold every re-resolution for ``timeout`` x ``attempts``."""
        tasks = [asyncio.ensure_future(self._query_servers(name, kind)) for kind in kinds]
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if pending and any(not task.exception() and task.result()[0] for task in done):
                    await asyncio.wait(pending, timeout=RESOLUTION_DELAY)
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return [None if task.cancelled() else task.exception() or task.result() for task in tasks]

    async def _getaddrinfo(self, name: str) -> tuple[str, ...]:
        family = {"any": socket.AF_UNSPEC, "4": socket.AF_INET, "6": socket.AF_INET6}[self.ip_version]
        try:
            async with asyncio.timeout(self.timeout * self.attempts):
                infos = await asyncio.get_running_loop().getaddrinfo(name, None, family=family,
                                                                     type=socket.SOCK_STREAM)
        except TimeoutError:
            raise DnsError(f"getaddrinfo({name}) took longer than {self.timeout * self.attempts:g} s") from None
        except OSError as exc:
            raise DnsError(f"getaddrinfo({name}): {exc.strerror or type(exc).__name__}") from None
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise DnsError(f"getaddrinfo({name}) found no address")
        return addresses

    async def _query_servers(self, name: str, kind: int) -> tuple[tuple[str, ...], float]:
        problems: list[str] = []
        for _ in range(self.attempts):
            for server in self.servers:
                try:
                    return await query(name, kind, server, timeout=self.timeout)
                except DnsError as exc:
                    problems.append(str(exc))
                    if isinstance(exc, _FinalAnswer):
                        raise
        raise DnsError(f"{_kind_name(kind)} {name}: {problems[-1]}" + (
            f" (and {len(problems) - 1} more failed tries)" if len(problems) > 1 else ""))


class _FinalAnswer(DnsError):
    """A well-formed negative answer (NXDOMAIN, no records): asking again or elsewhere would not help."""


def _kind_name(kind: int) -> str:
    return {_TYPE_A: "A", _TYPE_AAAA: "AAAA"}.get(kind, str(kind))


# -- one query --------------------------------------------------------------------------------------------------


async def query(name: str, kind: int, server: tuple[str, int], *, timeout: float) -> tuple[tuple[str, ...], float]:
    """Ask ``server`` for ``kind`` records of ``name`` (UDP, then TCP if truncated): (addresses, smallest TTL)."""
    ident = secrets.randbits(16)
    question = _encode_name(name) + struct.pack("!HH", kind, _CLASS_IN)
    message = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question  # RD set
    answer = await _udp_exchange(message, ident, question, server, timeout)
    if answer is None:  # truncated: the whole answer over TCP
        answer = await _tcp_exchange(message, server, timeout)
        if _check_header(answer, ident, question) is None:
            raise DnsError(f"{server[0]} answered over TCP with a mismatched or truncated message")
    return _addresses(answer, name, kind)


async def _udp_exchange(message: bytes, ident: int, question: bytes, server: tuple[str, int],
                        timeout: float) -> bytes | None:
    """The matching UDP answer, or None when it is truncated."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, server)  # the kernel then drops datagrams from anyone else
            await loop.sock_sendall(sock, message)
            async with asyncio.timeout(timeout):
                while True:
                    data = await loop.sock_recv(sock, _MAX_UDP_ANSWER)
                    verdict = _check_header(data, ident, question)
                    if verdict is not None:  # anything else is ignored, as a spoofed answer would be
                        return None if verdict == "truncated" else data
        except TimeoutError:
            raise DnsError(f"{server[0]} did not answer within {timeout:g} s") from None
        except OSError as exc:
            raise DnsError(f"{server[0]}: {exc.strerror or type(exc).__name__}") from None
    finally:
        sock.close()


async def _tcp_exchange(message: bytes, server: tuple[str, int], timeout: float) -> bytes:
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(server[0], server[1])
            writer.write(struct.pack("!H", len(message)) + message)
            await writer.drain()
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            return await reader.readexactly(min(length, _MAX_TCP_ANSWER))
    except TimeoutError:
        raise DnsError(f"{server[0]} did not answer over TCP within {timeout:g} s") from None
    except asyncio.IncompleteReadError:
        raise DnsError(f"{server[0]} closed the TCP connection before a whole answer") from None
    except OSError as exc:
        raise DnsError(f"{server[0]} over TCP: {exc.strerror or type(exc).__name__}") from None
    finally:
        if writer is not None:
            writer.close()


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.split("."):
        raw = label.encode("ascii", "strict") if label.isascii() else b""
        if not 1 <= len(raw) <= 63:
            raise DnsError(f"{escaped(name, 80)!r} is not a name DNS can look up")
        out += bytes([len(raw)]) + raw
    if len(out) + 1 > 255:
        raise DnsError(f"{escaped(name, 80)!r} is longer than DNS allows")
    return out + b"\x00"


def _check_header(data: bytes, ident: int, question: bytes) -> str | None:
    """"ok" or "truncated" for an answer to our question; None for anything else (ignored)."""
    if len(data) < 12 + len(question):
        return None
    got_id, flags, qdcount = struct.unpack_from("!HHH", data)
    if got_id != ident or not flags & 0x8000 or (flags >> 11) & 0xF != 0 or qdcount != 1:
        return None
    # The question echoed (names compare case-insensitively: a server may change the case).
    if data[12:12 + len(question)].lower() != question.lower():
        return None
    return "truncated" if flags & 0x0200 else "ok"


def _addresses(data: bytes, name: str, kind: int) -> tuple[tuple[str, ...], float]:
    _, flags, _, ancount, _, _ = struct.unpack_from("!HHHHHH", data)
    rcode = flags & 0xF
    if rcode == 3:
        raise _FinalAnswer(f"{name} does not exist (NXDOMAIN)")
    if rcode:
        raise DnsError(f"the server answered {_RCODES.get(rcode, f'rcode {rcode}')}")  # named by the caller
    if ancount > MAX_RECORDS:
        raise DnsError(f"{ancount} records, over the limit of {MAX_RECORDS}")
    offset = 12
    _, offset = _read_name(data, offset)
    offset += 4
    records: list[tuple[str, int, int, bytes | str]] = []
    for _ in range(ancount):
        owner, offset = _read_name(data, offset)
        if offset + 10 > len(data):
            raise DnsError("a truncated record in the answer")
        rtype, rclass, ttl, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        if offset + length > len(data):
            raise DnsError("a record longer than the answer")
        rdata: bytes | str = data[offset:offset + length]
        if rtype == _TYPE_CNAME and rclass == _CLASS_IN:
            rdata, _ = _read_name(data, offset)
        offset += length
        if rclass == _CLASS_IN:
            records.append((owner, rtype, ttl if ttl <= 0x7FFFFFFF else 0, rdata))  # RFC 2181: MSB set means 0
    current, ttl_floor = name.lower(), float("inf")
    for _ in range(MAX_CNAME_HOPS + 1):
        size = 4 if kind == _TYPE_A else 16
        found = [(ttl, rdata) for owner, rtype, ttl, rdata in records
                 if owner == current and rtype == kind and isinstance(rdata, bytes) and len(rdata) == size]
        if found:
            addresses = tuple(str(ipaddress.ip_address(rdata)) for _, rdata in found)
            return addresses, float(min(ttl_floor, *(ttl for ttl, _ in found)))
        alias = [(ttl, rdata) for owner, rtype, ttl, rdata in records if owner == current and rtype == _TYPE_CNAME]
        if not alias:
            raise _FinalAnswer(f"no {_kind_name(kind)} record for {name}" + (
                f" (its alias {current} has none in the answer)" if current != name.lower() else ""))
        ttl_floor = min(ttl_floor, alias[0][0])
        current = str(alias[0][1])
    raise DnsError(f"a CNAME chain longer than {MAX_CNAME_HOPS}")


def _read_name(data: bytes, offset: int) -> tuple[str, int]:
    """The (lower-cased) name at ``offset`` and the offset after it; pointers only backwards, bounded."""
    labels: list[str] = []
    end: int | None = None
    pointers = 0
    size = 0
    while True:
        if offset >= len(data):
            raise DnsError("a name runs past the end of the answer")
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(data):
                raise DnsError("a name runs past the end of the answer")
            target = ((length & 0x3F) << 8) | data[offset + 1]
            pointers += 1
            if target >= offset or pointers > MAX_POINTERS:
                raise DnsError("a compression pointer that loops or points forwards")
            if end is None:
                end = offset + 2
            offset = target
            continue
        if length & 0xC0:
            raise DnsError("a label type DNS does not use")
        offset += 1
        if length == 0:
            break
        label = data[offset:offset + length]
        if len(label) != length:
            raise DnsError("a name runs past the end of the answer")
        size += length + 1
        if size > 255:
            raise DnsError("a name longer than 255 bytes")
        labels.append(label.decode("ascii", "replace").lower())
        offset += length
    return ".".join(labels), (end if end is not None else offset)
