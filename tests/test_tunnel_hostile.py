"""Tunnel mode against hostile peers: a parent, a network, a DNS server, a credentials source or a server that
misbehaves on purpose, over real sockets on loopback. Each test is an attack that once got through."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from pathlib import Path

import pytest

from nitrokit.enclave.tunnel import REFRESH_BEFORE_EXPIRY, REFRESH_WITHOUT_EXPIRY, CredentialsCache
from nitrokit.errors import UsageError
from nitrokit.parent._allowlist import AllowListError, parse_allow_list
from nitrokit.parent._dns import DnsError, Resolved, Resolver
from nitrokit.parent.tunnel import TunnelConfig, TunnelThread
from nitrokit.wire.address import TcpAddress, connect
from nitrokit.wire.credentials import AwsCredentials
from nitrokit.wire.errors import WireTimeoutError
from tests.test_dns import Record, StubDns, a, cname, reply, stub
from tests.test_enclave_tunnel import ACCESS_KEY, SECRET, StaticCredentials, _http, _transport, canned
from tests.test_parent_tunnel import Target, config, wait_until

__all__ = ["stub"]  # the fixture, imported for its use here

# -- the enclave: credentials a provider hands over -------------------------------------------------------------


@pytest.mark.parametrize(("member", "credentials"), [
    ("SessionToken", AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET,
                                    session_token="token\r\nX-Injected: 1")),
    ("SessionToken", AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET, session_token="t\u20ac")),
    ("AccessKeyId", AwsCredentials(access_key_id=ACCESS_KEY + "\r\nX-Injected: 1", secret_access_key=SECRET)),
    ("SecretAccessKey", AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key="")),
])
def test_credentials_that_would_break_the_request_head_are_refused_before_sending(
        member: str, credentials: AwsCredentials) -> None:
    """A provider's credentials go into HTTP headers: a CR/LF would add headers of the provider's choosing to a
    signed request, a non-Latin-1 character escaped as a bare UnicodeEncodeError. Both are refused, by name."""
    with pytest.raises(UsageError, match=member) as caught:
        CredentialsCache(StaticCredentials(credentials)).credentials()
    assert "Injected" not in str(caught.value) and "\u20ac" not in str(caught.value)
    with canned(_http("200 OK", b"{}")) as server, \
            _transport(server.address, credentials=StaticCredentials(credentials)) as transport, \
            pytest.raises(UsageError, match=member):
        transport.call("GenerateRandom", {"NumberOfBytes": 8})
    assert not server.requests


# -- the parent: DNS -------------------------------------------------------------------------------------------


def test_callers_waiting_on_a_failing_lookup_share_its_failure(stub: StubDns) -> None:
    """A nameserver that never answers: every tunnel opened meanwhile waits for the one lookup in flight. They
    used to each ask again, one after the other, once it failed, so N tunnels waited N lookups (holding their
    connection places long after their enclaves gave up). The waiters now get the lookup's own failure."""
    stub.responder = lambda query, transport: []
    dns = Resolver(servers=[stub.server], ip_version="4", timeout=0.2, attempts=1)

    async def many() -> list[BaseException | Resolved]:
        return await asyncio.gather(*(dns.resolve("kms.example.com") for _ in range(5)), return_exceptions=True)

    results = asyncio.run(many())
    assert all(isinstance(result, DnsError) and "did not answer" in str(result) for result in results)
    assert len(stub.queries) == 1
    with pytest.raises(DnsError):  # a caller coming after the failure asks again
        asyncio.run(dns.resolve("kms.example.com"))
    assert len(stub.queries) == 2


# -- the parent: the allow-list and the target ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.1", "0x7f.1", "010.0.0.1", "2130706433", "1.2.3.0x4"])
def test_an_ipv4_address_in_a_shorthand_form_is_neither_a_name_nor_an_address(host: str) -> None:
    """getaddrinfo reads these as IPv4 addresses (``010.0.0.1`` as 8.0.0.1, octal), a nameserver as names: what
    the tunnel would reach depended on which one was asked. A host name never ends in a numeric label."""
    with pytest.raises(AllowListError, match="not a host name or IP address"):
        parse_allow_list(f"allowlist:\n- {{address: {host}, port: 443}}\n")
    with pytest.raises(UsageError, match="not a host name or IP address"):
        TunnelConfig(listen="tcp://127.0.0.1:0", target=f"{host}:443", credentials_listen=None)
    assert parse_allow_list("allowlist:\n- {address: 10.0.0.1, port: 443}\n").allows("10.0.0.1", 443)
    assert parse_allow_list("allowlist:\n- {address: kms.x1.example, port: 443}\n").allows("KMS.x1.example.", 443)


class FailingAfterFirst:
    """Hands out ``credentials`` once, then fails as a stalled or refusing credentials channel does."""

    def __init__(self, credentials: AwsCredentials) -> None:
        self.first: AwsCredentials | None = credentials
        self.calls = 0

    def credentials(self) -> AwsCredentials:
        self.calls += 1
        first, self.first = self.first, None
        if first is None:
            raise WireTimeoutError("the credentials channel gave no answer")
        return first


@pytest.mark.parametrize("expiration", [REFRESH_BEFORE_EXPIRY - 1, None])
def test_a_failed_early_refresh_keeps_credentials_still_good(expiration: float | None) -> None:
    """The refresh before expiry is early on purpose; when the channel fails then (the parent's credential
    source is down, or the parent stalls the channel), the credentials in hand still sign, rather than every
    KMS call failing for the last five minutes. The channel is asked again after a while, not on every call."""
    clock = [1_900_000_000.0]
    good = AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET,
                          expiration=None if expiration is None else clock[0] + 3600)
    provider = FailingAfterFirst(good)
    cache = CredentialsCache(provider, clock=lambda: clock[0])
    assert cache.credentials() is good
    clock[0] += 3600 - (expiration or 0) if expiration is not None else REFRESH_WITHOUT_EXPIRY
    assert cache.credentials() is good and provider.calls == 2
    assert cache.credentials() is good and provider.calls == 2  # not asked again at once
    clock[0] += 31
    assert cache.credentials() is good and provider.calls == 3
    if expiration is not None:  # within a minute of the expiration: a failure is the caller's
        clock[0] = good.expiration - 59  # type: ignore[operator]
        with pytest.raises(WireTimeoutError):
            cache.credentials()
    cache.invalidate()  # KMS refused them: a failure is the caller's
    with pytest.raises(WireTimeoutError):
        cache.credentials()


class SlowCredentials:
    """Credentials that take ``delays[i]`` seconds on the i-th fetch (a parent dripping its channel's answer)."""

    def __init__(self, *delays: float) -> None:
        self.delays = list(delays)

    def credentials(self) -> AwsCredentials:
        time.sleep(self.delays.pop(0))
        return AwsCredentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET)


@pytest.mark.parametrize(("answer", "delays", "requests"), [
    (_http("200 OK", b"{}"), (0.6,), 0),
    (_http("400 Bad Request", b'{"__type":"UnrecognizedClientException"}'), (0.0, 0.6), 1),
])
def test_the_credentials_fetch_is_inside_the_calls_deadline(answer: bytes, delays: tuple[float, ...],
                                                            requests: int) -> None:
    """A parent holding the credentials channel's answer back used to get the whole timeout again for the
    request (and again for the refetch and the retry after a refused key): a call of timeout 30 s could take
    80. The fetch now counts: once the deadline has passed nothing more is sent."""
    with canned(answer) as server, _transport(server.address, credentials=SlowCredentials(*delays),
                                              timeout=0.5) as transport, pytest.raises(WireTimeoutError):
        transport.call("GenerateRandom", {"NumberOfBytes": 8})
    assert len(server.requests) == requests


# -- the parent: stopping --------------------------------------------------------------------------------------


def test_a_stop_lets_an_answer_still_going_to_a_slow_enclave_through(tmp_path: Path) -> None:
    """The last bytes went to the enclave and none moved for a quarter second, but only because the enclave
    reads slowly and the answer waits in the parent's buffers: not between exchanges. Such a tunnel was cut at
    once by a stop, mid-answer."""
    size = 2 << 20

    def answer(conn: socket.socket) -> None:
        conn.recv(100)
        conn.sendall(b"a" * size)
        conn.recv(100)

    target = Target(answer)
    with contextlib.closing(target.server), \
            TunnelThread(config(tmp_path, f"127.0.0.1:{target.port}", grace_period=10.0)) as running, \
            connect(running.address, timeout=5) as sock:
        sock.settimeout(10)
        sock.sendall(b"request")
        wait_until(lambda: running.proxy.buffered_bytes() > 0)  # the parent holds part of the answer
        stopper = threading.Thread(target=running.stop)
        stopper.start()
        time.sleep(1.0)  # a slow enclave: four times the settling time before it reads again
        received = 0
        while data := sock.recv(65536):
            received += len(data)
        stopper.join()
    assert received == size


# -- the parent: a peer opening connections in a loop -----------------------------------------------------------


def test_refused_connections_cannot_flood_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """Over its cap, a peer connecting in a loop got one warning line per connection (thousands a second), and
    journald's rate limit then drops every line of the service, the tunnels' own too. Refusals are now logged
    at most once a second, each line counting the ones left out before it."""
    caplog.set_level(logging.INFO, logger="nitrokit.parent")
    with contextlib.closing(socket.create_server(("127.0.0.1", 0))) as target, \
            TunnelThread(TunnelConfig(listen="tcp://127.0.0.1:0", target=f"127.0.0.1:{target.getsockname()[1]}",
                                      credentials_listen=None, max_connections_per_peer=1)) as running:
        assert isinstance(running.address, TcpAddress)
        server = (running.address.host, running.address.port)
        with socket.create_connection(server):  # the peer's one place, taken
            wait_until(lambda: running.proxy.connections == 1)
            started = time.monotonic()
            for _ in range(200):
                socket.create_connection(server).close()
            elapsed = time.monotonic() - started
            time.sleep(1.1)
            socket.create_connection(server).close()  # reports the ones left out since the last line
            wait_until(lambda: "before this one" in caplog.text)
    lines = [record.getMessage() for record in caplog.records if "refused-cap" in record.getMessage()]
    assert len(lines) <= elapsed + 2
    left_out = [int(line.rpartition("; ")[2].split()[0]) for line in lines if "before this one" in line]
    assert len(lines) + sum(left_out) == 201


@pytest.mark.parametrize(("records", "problem"), [
    ([a("kms.example.com", f"10.0.{i // 250}.{i % 250}") for i in range(300)], "300 records, over the limit"),
    ([cname("kms.example.com", "b.example.com"), cname("b.example.com", "kms.example.com")], "a CNAME chain"),
])
def test_a_hostile_answer_is_named_once(stub: StubDns, records: list[Record], problem: str) -> None:
    """The error said the record type and name twice ("A kms.example.com: A kms.example.com: 300 records")."""
    stub.responder = lambda query, transport: [reply(query, records)]
    dns = Resolver(servers=[stub.server], ip_version="4", timeout=0.5, attempts=1)
    with pytest.raises(DnsError, match=problem) as caught:
        asyncio.run(dns.resolve("kms.example.com"))
    assert str(caught.value).count("kms.example.com") == 1
