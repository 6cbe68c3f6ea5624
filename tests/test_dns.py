"""The tunnel's resolver against a stub DNS server on loopback (UDP and TCP) written here.

TTLs are stepped over with a fake clock, not waited for.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from nitrokit.errors import UsageError
from nitrokit.parent._dns import DnsError, Resolver, parse_dns_server, system_nameservers
from nitrokit.parent.tunnel import TunnelConfig, TunnelThread
from nitrokit.wire.address import connect

A, CNAME, AAAA = 1, 5, 28
Record = tuple[str, int, int, bytes]  # owner, type, TTL, rdata
Responder = Callable[[bytes, str], list[bytes]]  # (query, "udp" | "tcp") -> the messages to send back


def encode_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".") if label) + b"\x00"


def question_of(query: bytes) -> tuple[str, int]:
    labels, offset = [], 12
    while query[offset]:
        labels.append(query[offset + 1:offset + 1 + query[offset]].decode())
        offset += 1 + query[offset]
    return ".".join(labels), struct.unpack_from("!H", query, offset + 1)[0]


def reply(query: bytes, records: list[Record], *, rcode: int = 0, truncated: bool = False,
          ident: int | None = None) -> bytes:
    """An answer to ``query`` (its id and question echoed) carrying ``records``."""
    end = query.index(b"\x00", 12) + 5
    flags = 0x8180 | rcode | (0x0200 if truncated else 0)
    header = struct.pack("!HHHHHH", struct.unpack_from("!H", query)[0] if ident is None else ident, flags, 1,
                         len(records), 0, 0)
    body = b"".join(encode_name(owner) + struct.pack("!HHIH", kind, 1, ttl, len(rdata)) + rdata
                    for owner, kind, ttl, rdata in records)
    return header + query[12:end] + body


def a(owner: str, ip: str, ttl: int = 60) -> Record:
    return owner, A, ttl, socket.inet_pton(socket.AF_INET, ip)


def aaaa(owner: str, ip: str, ttl: int = 60) -> Record:
    return owner, AAAA, ttl, socket.inet_pton(socket.AF_INET6, ip)


def cname(owner: str, target: str, ttl: int = 60) -> Record:
    return owner, CNAME, ttl, encode_name(target)


class StubDns:
    """A DNS server on 127.0.0.1 (UDP and TCP on one port) answering with ``responder``; records queries."""

    def __init__(self) -> None:
        self.responder: Responder = lambda query, transport: []
        self.queries: list[tuple[str, str, int]] = []  # (transport, name, type)
        for _ in range(20):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(8)
        self.udp.settimeout(0.1)
        self.tcp.settimeout(0.1)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve_udp, daemon=True),
                         threading.Thread(target=self._serve_tcp, daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def server(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def _record(self, transport: str, query: bytes) -> None:
        name, kind = question_of(query)
        self.queries.append((transport, name, kind))

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.udp.recvfrom(4096)
            except TimeoutError:
                continue
            self._record("udp", query)
            for message in self.responder(query, "udp"):
                self.udp.sendto(message, peer)

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                length = struct.unpack("!H", conn.recv(2, socket.MSG_WAITALL))[0]
                query = conn.recv(length, socket.MSG_WAITALL)
                self._record("tcp", query)
                for message in self.responder(query, "tcp"):
                    conn.sendall(struct.pack("!H", len(message)) + message)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def stub() -> Iterator[StubDns]:
    server = StubDns()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver(stub: StubDns, clock: Clock | None = None, **options: Any) -> Resolver:
    return Resolver(servers=[stub.server], timeout=0.5, attempts=1, clock=clock or Clock(), **options)


def resolve(resolver: Resolver, name: str) -> tuple[tuple[str, ...], str]:
    result = asyncio.run(resolver.resolve(name))
    return result.addresses, result.source


def test_an_answer_is_cached_for_its_ttl(stub: StubDns) -> None:
    answers = {"first": "192.0.2.1"}
    stub.responder = lambda query, _: [reply(query, [a(question_of(query)[0], answers["first"], ttl=30)])]
    clock = Clock()
    dns = resolver(stub, clock, ip_version="4")

    async def run() -> list[tuple[str, ...]]:
        seen = [(await dns.resolve("kms.example.test")).addresses]
        clock.now += 29
        seen.append((await dns.resolve("KMS.example.test.")).addresses)  # cached: same name, no query
        answers["first"] = "192.0.2.2"
        clock.now += 2
        seen.append((await dns.resolve("kms.example.test")).addresses)
        return seen

    assert asyncio.run(run()) == [("192.0.2.1",), ("192.0.2.1",), ("192.0.2.2",)]
    assert [query[1:] for query in stub.queries] == [("kms.example.test", A)] * 2


def test_ttls_are_clamped(stub: StubDns) -> None:
    stub.responder = lambda query, _: [reply(query, [a(question_of(query)[0], "192.0.2.1", ttl=0)])]
    clock = Clock()
    dns = resolver(stub, clock, ip_version="4", min_ttl=5.0)

    async def run() -> None:
        await dns.resolve("zero.test")
        clock.now += 4
        await dns.resolve("zero.test")  # TTL 0 is held for min_ttl

    asyncio.run(run())
    assert len(stub.queries) == 1


def test_a_cname_chain_is_followed_and_its_smallest_ttl_kept(stub: StubDns) -> None:
    stub.responder = lambda query, _: [reply(query, [
        cname("kms.example.test", "alias-one.example.test", ttl=300),
        cname("alias-one.example.test", "alias-two.example.test", ttl=7),
        a("alias-two.example.test", "192.0.2.10", ttl=60), a("alias-two.example.test", "192.0.2.11", ttl=60),
        a("unrelated.example.test", "198.51.100.1"),  # not on the chain: never used
    ])]
    clock = Clock()
    dns = resolver(stub, clock, ip_version="4")

    async def run() -> None:
        assert (await dns.resolve("kms.example.test")).addresses == ("192.0.2.10", "192.0.2.11")
        clock.now += 8  # past the CNAME's 7 s
        await dns.resolve("kms.example.test")

    asyncio.run(run())
    assert len(stub.queries) == 2


def test_an_endless_cname_chain_is_refused(stub: StubDns) -> None:
    stub.responder = lambda query, _: [reply(query, [cname(f"c{index}.test", f"c{index + 1}.test")
                                                    for index in range(20)])]
    with pytest.raises(DnsError, match="CNAME chain"):
        resolve(resolver(stub, ip_version="4"), "c0.test")


def test_a_truncated_answer_is_asked_again_over_tcp(stub: StubDns) -> None:
    def responder(query: bytes, transport: str) -> list[bytes]:
        if transport == "udp":
            return [reply(query, [], truncated=True)]
        return [reply(query, [a("big.test", f"192.0.2.{index}") for index in range(1, 60)])]

    stub.responder = responder
    addresses, source = resolve(resolver(stub, ip_version="4"), "big.test")
    assert len(addresses) == 59 and source == "dns"
    assert [query[0] for query in stub.queries] == ["udp", "tcp"]


def test_a_compression_loop_is_refused(stub: StubDns) -> None:
    def responder(query: bytes, _: str) -> list[bytes]:
        message = reply(query, [])
        # One answer whose owner name is a pointer to itself.
        pointer = len(message)
        header = bytearray(message)
        header[6:8] = struct.pack("!H", 1)
        return [bytes(header) + struct.pack("!H", 0xC000 | pointer) + struct.pack("!HHIH", A, 1, 60, 4) + b"\x7f\0\0\1"]

    stub.responder = responder
    with pytest.raises(DnsError, match="compression pointer"):
        resolve(resolver(stub, ip_version="4"), "loop.test")


def test_an_answer_with_the_wrong_id_is_ignored(stub: StubDns) -> None:
    def responder(query: bytes, _: str) -> list[bytes]:
        wrong = struct.unpack_from("!H", query)[0] ^ 0x5A5A
        return [reply(query, [a("id.test", "203.0.113.66")], ident=wrong), reply(query, [a("id.test", "192.0.2.7")])]

    stub.responder = responder
    assert resolve(resolver(stub, ip_version="4"), "id.test")[0] == ("192.0.2.7",)
    stub.responder = lambda query, _: [reply(query, [a("id.test", "203.0.113.66")],
                                             ident=struct.unpack_from("!H", query)[0] ^ 1)]
    with pytest.raises(DnsError, match="did not answer"):
        resolve(resolver(stub, ip_version="4"), "id.test")


def test_servfail_and_nxdomain_are_errors(stub: StubDns) -> None:
    stub.responder = lambda query, _: [reply(query, [], rcode=2)]
    with pytest.raises(DnsError, match="SERVFAIL"):
        resolve(resolver(stub, ip_version="4"), "fail.test")
    stub.responder = lambda query, _: [reply(query, [], rcode=3)]
    with pytest.raises(DnsError, match="NXDOMAIN"):
        resolve(resolver(stub, ip_version="4"), "nothing.test")
    stub.responder = lambda query, _: [reply(query, [])]
    with pytest.raises(DnsError, match="no A record"):
        resolve(resolver(stub, ip_version="4"), "empty.test")


def test_a_failure_after_expiry_serves_the_last_answer_for_a_while(stub: StubDns,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    stub.responder = lambda query, _: [reply(query, [a("stale.test", "192.0.2.5", ttl=10)])]
    clock = Clock()
    dns = resolver(stub, clock, ip_version="4", stale_grace=60.0)

    async def run() -> None:
        assert (await dns.resolve("stale.test")).source == "dns"
        stub.responder = lambda query, _: [reply(query, [], rcode=2)]
        clock.now += 11
        with caplog.at_level(logging.WARNING, logger="nitrokit.parent"):
            result = await dns.resolve("stale.test")
        assert (result.addresses, result.source) == (("192.0.2.5",), "stale")
        assert "serving the last good answer" in caplog.text
        clock.now += 61
        with pytest.raises(DnsError, match="SERVFAIL"):
            await dns.resolve("stale.test")

    asyncio.run(run())


def test_ip_versions(stub: StubDns) -> None:
    def responder(query: bytes, _: str) -> list[bytes]:
        name, kind = question_of(query)
        return [reply(query, [aaaa(name, "2001:db8::1")] if kind == AAAA else [a(name, "192.0.2.1")])]

    stub.responder = responder
    assert resolve(resolver(stub), "both.test")[0] == ("192.0.2.1", "2001:db8::1")  # IPv4 first
    assert resolve(resolver(stub, ip_version="6"), "both.test")[0] == ("2001:db8::1",)
    assert resolve(resolver(stub, ip_version="4"), "both.test")[0] == ("192.0.2.1",)
    # One family failing leaves the other.
    stub.responder = lambda query, _: ([reply(query, [], rcode=2)] if question_of(query)[1] == AAAA
                                       else [reply(query, [a("half.test", "192.0.2.9")])])
    assert resolve(resolver(stub), "half.test")[0] == ("192.0.2.9",)


def test_a_family_never_answered_does_not_hold_the_lookup(stub: StubDns) -> None:
    """Behind a resolver that drops AAAA, "any" goes on with the A answer after a short grace, not after the
    AAAA timeout (30 s here: the lookup must be over long before it), and caches it for the A record's TTL."""
    stub.responder = lambda query, _: ([] if question_of(query)[1] == AAAA
                                       else [reply(query, [a(question_of(query)[0], "192.0.2.7", ttl=40)])])
    clock = Clock()
    dns = Resolver(servers=[stub.server], timeout=30.0, attempts=2, clock=clock)

    async def run() -> list[tuple[tuple[str, ...], str]]:
        async with asyncio.timeout(10):  # far below the 60 s two AAAA tries would take
            seen = [await dns.resolve("v4only.test")]
            clock.now += 39
            seen.append(await dns.resolve("v4only.test"))  # cached for the A record's TTL: no query
            clock.now += 2
            seen.append(await dns.resolve("v4only.test"))
        return [(result.addresses, result.source) for result in seen]

    assert asyncio.run(run()) == [(("192.0.2.7",), "dns")] * 3
    assert sorted(query[1:] for query in stub.queries) == [("v4only.test", A)] * 2 + [("v4only.test", AAAA)] * 2


def test_literals_and_hosts_file_names_skip_dns(stub: StubDns, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    dns = resolver(stub, hosts_file=str(hosts), ip_version="4")
    assert resolve(dns, "10.1.2.3") == (("10.1.2.3",), "literal")
    assert resolve(resolver(stub), "::1") == (("::1",), "literal")
    assert resolve(dns, "localhost") == (("127.0.0.1",), "hosts")
    assert stub.queries == []
    with pytest.raises(DnsError, match="only IPv4"):
        resolve(dns, "::1")


def test_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n"
                    "nameserver bogus\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n")
    assert system_nameservers(str(conf)) == (("10.0.0.2", 53), ("fe80::1%eth0", 53), ("10.0.0.3", 53))
    assert system_nameservers(str(tmp_path / "missing")) == ()
    assert parse_dns_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_dns_server("::1") == ("::1", 53)
    assert parse_dns_server("[::1]:5353") == ("::1", 5353)
    for bad in ("dns.example.com", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x"):
        with pytest.raises(UsageError):
            parse_dns_server(bad)


def _target(host: str, port: int, name: bytes) -> socket.socket:
    server = socket.create_server((host, port))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(name)

    threading.Thread(target=serve, daemon=True).start()
    return server


def test_the_tunnel_follows_the_address_when_the_ttl_runs_out(stub: StubDns, tmp_path: Path) -> None:
    for _ in range(20):
        first = _target("127.0.0.2", 0, b"first")
        port = first.getsockname()[1]
        try:
            second = _target("127.0.0.1", port, b"second")
            break
        except OSError:
            first.close()
    answer = {"ip": "127.0.0.2"}
    stub.responder = lambda query, _: [reply(query, [a("kms.moving.test", answer["ip"], ttl=20)])]
    clock = Clock()
    config = TunnelConfig(listen=f"unix://{tmp_path / 't.sock'}", target=f"kms.moving.test:{port}",
                          credentials_listen=None, ip_version="4")
    try:
        with TunnelThread(config, resolver=resolver(stub, clock, ip_version="4")) as running:
            def through() -> bytes:
                with connect(running.address, timeout=5) as sock:
                    sock.settimeout(5)
                    return sock.recv(100)

            assert through() == b"first"
            answer["ip"] = "127.0.0.1"
            assert through() == b"first"  # still cached
            clock.now += 21
            assert through() == b"second"
    finally:
        first.close()
        second.close()
