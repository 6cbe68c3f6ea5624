"""The parent's tunnel mode: a bounded asyncio byte relay from enclaves to one allow-listed host, and the
credentials channel beside it.

In tunnel mode the enclave runs TLS to KMS itself and signs its own requests; the parent only moves bytes it
cannot read or alter undetected, and hands the enclave AWS credentials (``nitrokit parent --mode tunnel``;
docs/parent.md)::

    proxy = TunnelProxy(TunnelConfig(region="eu-west-1"))          # vsock://any:8000 -> kms.eu-west-1...:443
    address = await proxy.start()       # tunnel address; proxy.credentials_address: the GetCredentials channel
    await proxy.stop()                  # stop accepting, let tunnels run out the grace period, close
    raise SystemExit(run_until_signal(proxy, on_listening=print))   # the CLI: SIGTERM/SIGINT stop it

    with TunnelThread(TunnelConfig(listen="tcp://127.0.0.1:0", target="127.0.0.1:8443",
                                   credentials_listen="tcp://127.0.0.1:0"), credentials_source=source) as running:
        running.address, running.credentials_address

Per accepted connection: the connection caps (overall, and per peer: a vsock CID, a Unix peer's uid, a TCP
host, as :func:`nitrokit.wire.server.peer_of` names it; over either, the connection is closed at once), the
target resolved (:mod:`nitrokit.parent._dns`: cached for its DNS TTL), its addresses tried in order, each
within ``connect_timeout``, then bytes pumped both ways, ``buffer_size`` at a time with backpressure (a side
that does not read stops the other side being read: per direction a tunnel holds at most about four
``buffer_size`` plus one 256 KiB read of asyncio's, so about 1 MiB by default). An end of file one way is
passed on (half-close) while the other way goes on. A tunnel ends when both ways have ended, when no byte has
moved either way for ``idle_timeout``, or at ``max_tunnel_lifetime``.

A stop (SIGTERM) refuses new connections at once. A byte relay cannot see requests, but the enclave speaks
first (TLS, then HTTP): a tunnel whose last bytes went to the enclave (none still buffered for it), and none
since for a quarter second, is between exchanges (a kept-alive connection waiting for its next request) and
is closed at once; a tunnel with a request in flight goes on until its answer is through, for at most
``grace_period``.

The target must be on the allow-list (vsock-proxy's YAML, :mod:`nitrokit.parent._allowlist`; without one,
the list is the target alone) or the config is refused: the tunnel fails closed.

One log line per tunnel on the ``nitrokit.parent`` logger, at its end: ``tunnel conn= peer= target= ip= bytes_up=
bytes_down= ms= end=`` with ``end`` one of client-closed, target-closed, idle, lifetime, connect-failed,
refused-cap, stop. Never a byte of content. Connections refused at once are logged at most once a second,
each line counting those left out before it (:class:`~nitrokit.wire.server.RefusalLog`, as the wire servers
do), so a peer connecting in a loop cannot flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from nitrokit.errors import UsageError
from nitrokit.kms_api import check_region, kms_endpoint_host, region_from_environment
from nitrokit.parent._allowlist import AllowList, AllowListError, load_allow_list
from nitrokit.parent._credentials import CredentialsServer, CredentialsSource, boto3_credentials_source
from nitrokit.parent._dns import DnsError, IpVersion, Resolver, parse_dns_server
from nitrokit.parent._tunnel_defaults import DEFAULT_CREDENTIALS_LISTEN, DEFAULT_LISTEN, TUNNEL_DEFAULTS
from nitrokit.text import escaped
from nitrokit.wire.address import (
    LISTEN_BACKLOG,
    Address,
    TcpAddress,
    UnixAddress,
    bound_address,
    open_connection,
    parse_address,
)
from nitrokit.wire.address import listen as listen_socket
from nitrokit.wire.errors import WireError
from nitrokit.wire.server import RefusalLog, ServerLimits, ServerThread, check_count, check_seconds, peer_of

__all__ = ["DEFAULT_CREDENTIALS_LISTEN", "DEFAULT_LISTEN", "KMS_PORT", "AllowList", "AllowListError", "TunnelConfig",
           "TunnelProxy", "TunnelThread"]

KMS_PORT = 443
#: At most this many of the target's addresses are tried per tunnel (each within connect_timeout).
MAX_CONNECT_TRIES = 4
#: While stopping, a tunnel whose last bytes went to the enclave and none since for this long is closed.
_SETTLE_SECONDS = 0.25

logger = logging.getLogger("nitrokit.parent")


@dataclass(frozen=True, kw_only=True)
class TunnelConfig:
    """Everything the tunnel needs; every limit has a default and a bound (times in seconds).

    ``target`` is ``HOST:PORT`` (``[IPv6]:PORT``); by default the region's KMS endpoint, port 443
    (:func:`~nitrokit.kms_api.kms_endpoint_host`: ``kms.<region>.amazonaws.com``, ``.amazonaws.com.cn`` in
    China, the name the enclave's TLS checks), the region from ``region`` or AWS_REGION / AWS_DEFAULT_REGION;
    a ``region`` given must be a region name even beside a ``target``. ``allow_list`` is an
    :class:`AllowList` or the path of a vsock-proxy YAML file. ``credentials_listen`` None runs no credentials channel.
    """

    listen: str | Address = DEFAULT_LISTEN
    target: str | None = None
    region: str | None = None
    allow_list: AllowList | str | os.PathLike[str] | None = None
    credentials_listen: str | Address | None = DEFAULT_CREDENTIALS_LISTEN
    profile: str | None = None
    ip_version: IpVersion = "any"
    #: nameservers to ask (``IP[:PORT]``); default those of /etc/resolv.conf
    dns_servers: tuple[str, ...] = ()
    #: open tunnels overall; one more is closed at once (logged refused-cap)
    max_connections: int = TUNNEL_DEFAULTS.max_connections
    #: open tunnels from one peer (vsock CID, Unix peer uid, TCP host)
    max_connections_per_peer: int = TUNNEL_DEFAULTS.max_connections_per_peer
    #: per address of the target tried
    connect_timeout: float = TUNNEL_DEFAULTS.connect_timeout
    #: a tunnel with no byte either way for this long is closed
    idle_timeout: float = TUNNEL_DEFAULTS.idle_timeout
    #: a tunnel is closed this long after it was accepted, busy or not
    max_tunnel_lifetime: float = TUNNEL_DEFAULTS.max_tunnel_lifetime
    #: bytes read at a time, and the most buffered per direction and side
    buffer_size: int = TUNNEL_DEFAULTS.buffer_size
    #: on stop, how long tunnels may go on before they are cut
    grace_period: float = TUNNEL_DEFAULTS.grace_period
    dns_timeout: float = 2.0
    dns_attempts: int = 2
    #: after a failed re-resolution, how long the last good answer is still used
    dns_stale_grace: float = 300.0
    #: the credential source's time per request (under the client's 10 s)
    credentials_timeout: float = 5.0

    target_host: str = field(init=False, repr=False, compare=False)
    target_port: int = field(init=False, repr=False, compare=False)
    #: the allow-list in force (loaded and checked on creation)
    allowed: AllowList = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        listen = parse_address(self.listen)
        if self.credentials_listen is not None:
            _check_credentials_listen(parse_address(self.credentials_listen), listen)
        check_count("max_connections", self.max_connections, 1, 65536)
        check_count("max_connections_per_peer", self.max_connections_per_peer, 1, 65536)
        check_count("buffer_size", self.buffer_size, 1024, 16 << 20)
        check_count("dns_attempts", self.dns_attempts, 1, 10)
        for name in ("connect_timeout", "idle_timeout", "max_tunnel_lifetime", "grace_period", "dns_timeout",
                     "dns_stale_grace", "credentials_timeout"):
            check_seconds(name, getattr(self, name))
        if self.ip_version not in ("any", "4", "6"):
            raise UsageError(f"ip_version must be any, 4 or 6, not {self.ip_version!r}")
        if not isinstance(self.dns_servers, tuple) or len(self.dns_servers) > 3:
            raise UsageError("dns_servers must be a tuple of at most 3 IP[:PORT]")
        for server in self.dns_servers:
            parse_dns_server(server)
        host, port = _target(self.target, self.region)
        version = _ip_version_of(host)
        if version is not None and self.ip_version not in ("any", version):
            raise UsageError(f"the target {_show(host, port)} is an IPv{version} address, not IPv{self.ip_version}")
        object.__setattr__(self, "target_host", host)
        object.__setattr__(self, "target_port", port)
        allowed = self.allow_list
        if allowed is None:
            allowed = AllowList.of(host, port)
        elif not isinstance(allowed, AllowList):
            allowed = load_allow_list(allowed)
        if not allowed.allows(host, port):
            where = f" ({escaped(os.fspath(self.allow_list), 200)})" if isinstance(self.allow_list, str | Path) else ""
            raise AllowListError(f"the target {_show(host, port)} is not on the allow-list{where}: the tunnel "
                                 "would not start")
        object.__setattr__(self, "allowed", allowed)

    @property
    def target_text(self) -> str:
        return _show(self.target_host, self.target_port)


def _check_credentials_listen(address: Address, listen: Address) -> None:
    """The credentials channel hands out the role's secret key to whoever connects: only vsock (local enclaves)
    or, in tests, a Unix socket or the loopback; and never the tunnel's own address."""
    if isinstance(address, TcpAddress) and not _is_loopback(address.host):
        raise UsageError(f"credentials_listen {address} is not a loopback address: the credentials channel hands "
                         "out the role's secret key to whoever connects, so it is for vsock (or the loopback, "
                         "tcp://127.0.0.1:PORT, in tests)")
    if address == listen and not (isinstance(address, TcpAddress) and address.port == 0):
        raise UsageError(f"credentials_listen and listen are the same address ({address}): the credentials "
                         "channel needs its own (by default vsock://any:8001)")


def _is_loopback(host: str) -> bool:
    if host.lower().removesuffix(".") == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _ip_version_of(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host).version)
    except ValueError:
        return None


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _target(target: str | None, region: str | None) -> tuple[str, int]:
    if region is not None:
        check_region(region)
    if target is None:
        region = region or region_from_environment()
        if not region:
            raise UsageError("tunnel mode needs a target: --target HOST:PORT, or a region (--region or AWS_REGION) "
                             "for kms.<region>.amazonaws.com:443")
        return kms_endpoint_host(region), KMS_PORT
    if not isinstance(target, str):
        raise UsageError(f"--target must be HOST:PORT, not {type(target).__name__}")
    plainly = (f"--target must be HOST:PORT or [IPv6]:PORT, such as kms.eu-west-1.amazonaws.com:443, not "
               f"{escaped(target, 80)!r}")
    if "://" in target:
        raise UsageError(f"{plainly}: the tunnel relays bytes to a host and port, not to a URL")
    try:
        address = parse_address(f"tcp://{target}")
    except UsageError:
        host, sep, port = target.rpartition(":")
        if sep and host and port.isdigit() and not host.startswith("[") and ":" not in host:
            raise UsageError(f"--target {escaped(target, 80)!r}: {escaped(host, 80)!r} is not a host name or IP "
                             "address") from None
        raise UsageError(plainly) from None
    assert isinstance(address, TcpAddress)
    if address.port == 0:
        raise UsageError("the target's port must be from 1 to 65535")
    return address.host.lower().removesuffix("."), address.port


@dataclass(eq=False)
class _Tunnel:
    """One accepted connection's tally, for its log line."""

    number: int
    peer: str
    started: float
    ip: str = "-"
    up: int = 0
    down: int = 0
    last: float = 0.0
    end: str | None = None
    first_close: str | None = None
    detail: str = ""
    #: "up" or "down": which way the last bytes went (None: none yet)
    last_direction: str | None = None
    task: asyncio.Task[None] | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def finish(self, end: str, detail: str = "") -> None:
        if self.end is None:
            self.end = end
            self.detail = detail


class TunnelProxy:
    """The tunnel and its credentials channel (see the module docstring).

    ``credentials_source`` replaces boto3's credential chain (tests, the demo); ``resolver`` replaces the
    :class:`~nitrokit.parent._dns.Resolver` built from the config.
    """

    def __init__(self, config: TunnelConfig, *, credentials_source: CredentialsSource | None = None,
                 resolver: Resolver | None = None) -> None:
        if not isinstance(config, TunnelConfig):
            raise UsageError(f"config must be a TunnelConfig, not {type(config).__name__}")
        self.config = config
        self.resolver = resolver if resolver is not None else Resolver(
            ip_version=config.ip_version, servers=[parse_dns_server(text) for text in config.dns_servers] or None,
            timeout=config.dns_timeout, attempts=config.dns_attempts, stale_grace=config.dns_stale_grace)
        self._source = credentials_source
        self._server: asyncio.Server | None = None
        self._address: Address | None = None
        self._credentials: CredentialsServer | None = None
        self._tunnels: set[_Tunnel] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_peer: dict[str, int] = {}
        self._next = 0
        self._shutdown_task: asyncio.Task[None] | None = None
        self._warm_up: asyncio.Task[None] | None = None
        self._refusals = RefusalLog()

    @property
    def address(self) -> Address:
        """The tunnel's bound address (after :meth:`start`)."""
        if self._address is None:
            raise UsageError("the tunnel is not started")
        return self._address

    @property
    def credentials_address(self) -> Address | None:
        """The credentials channel's bound address (after :meth:`start`; None when it is not run)."""
        return self._credentials.server.address if self._credentials is not None else None

    @property
    def connections(self) -> int:
        """Tunnels open now."""
        return len(self._tunnels)

    def buffered_bytes(self) -> int:
        """Bytes waiting in the tunnels' write buffers now (what backpressure keeps near ``buffer_size``)."""
        return sum(writer.transport.get_write_buffer_size() for tunnel in list(self._tunnels)
                   for writer in list(tunnel.writers) if not writer.transport.is_closing())

    async def start(self) -> Address:
        """Bind the tunnel and the credentials channel and start accepting. Returns the tunnel's address."""
        if self._server is not None:
            return self.address
        config = self.config
        credentials: CredentialsServer | None = None
        if config.credentials_listen is not None:
            source = self._source if self._source is not None else boto3_credentials_source(config.profile)
            limits = ServerLimits(max_connections=config.max_connections,
                                  max_connections_per_peer=config.max_connections_per_peer,
                                  max_inflight_per_connection=1, max_frame_size=65536,
                                  idle_timeout=config.idle_timeout, grace_period=min(config.grace_period, 10.0))
            credentials = CredentialsServer(limits, source, timeout=config.credentials_timeout,
                                            listen=config.credentials_listen)
        sock = listen_socket(config.listen)
        try:
            self._address = bound_address(sock, config.listen)
            self._server = await asyncio.start_server(self._on_client, sock=sock, backlog=LISTEN_BACKLOG,
                                                      limit=config.buffer_size)
        except BaseException:
            sock.close()
            self._address = None
            raise
        try:
            if credentials is not None:
                await credentials.server.start(detail="GetCredentials")
        except BaseException:
            self._server.close()
            self._server = None
            self._address = None
            raise
        self._credentials = credentials
        logger.info("listening on %s (tunnel to %s, allow-list of %d, ip-version %s%s)", self._address,
                    config.target_text, len(config.allowed.entries), config.ip_version,
                    f", credentials on {credentials.server.address}" if credentials is not None else "")
        self._warm_up = asyncio.create_task(self._check_early())
        return self._address

    async def _check_early(self) -> None:
        """Resolve the target and ask the credential source once at start, in the background: a warm cache, and
        a DNS or credentials problem logged at once."""
        await asyncio.gather(self._resolve_early(), *([self._credentials.check()] if self._credentials else []))

    async def _resolve_early(self) -> None:
        try:
            await self.resolver.resolve(self.config.target_host)
        except DnsError as exc:
            logger.warning("dns %s: %s (each tunnel will try again)", self.config.target_host,
                           escaped(str(exc), 300))

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call more than once; from the event loop's thread)."""
        if self._server is None or self._shutdown_task is not None:
            return
        self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown())

    async def stop(self) -> None:
        """Stop accepting, let open tunnels go on for at most ``grace_period``, then close them all."""
        self.request_stop()
        if self._shutdown_task is not None:
            await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        assert self._server is not None
        started = time.perf_counter()
        self._server.close()
        if self._warm_up is not None:
            self._warm_up.cancel()
        if self._credentials is not None:
            self._credentials.server.request_stop()
        logger.info("stopping: no new tunnels; %d open", len(self._tunnels))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.grace_period
        late = set(self._tasks)
        while late:
            self._close_settled_tunnels()
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            _, late = await asyncio.wait(late, timeout=min(remaining, _SETTLE_SECONDS))
        if late:
            for tunnel in list(self._tunnels):
                tunnel.finish("stop", "grace period over")
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=1.0)
            logger.warning("stopped %d tunnel(s) still busy after the grace period", len(late))
        if self._credentials is not None:
            await self._credentials.server.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if isinstance(self._address, UnixAddress):
            with contextlib.suppress(OSError):
                os.unlink(self._address.path)
        logger.info("stopped in %.0f ms", (time.perf_counter() - started) * 1000)

    def _close_settled_tunnels(self) -> None:
        """While stopping: close the tunnels between exchanges (the last bytes went to the enclave, none since
        for a moment): a kept-alive connection waiting for its next request; the enclave opens a new one."""
        now = time.monotonic()
        for tunnel in list(self._tunnels):
            # Bytes still buffered for the enclave: an answer waiting for a slow reader, not a finished one.
            to_enclave = tunnel.writers[0].transport
            # Strictly "down": a tunnel still resolving or connecting (None) holds a ClientHello not yet relayed.
            settled = (tunnel.last_direction == "down" and now - tunnel.last >= _SETTLE_SECONDS
                       and (to_enclave.is_closing() or not to_enclave.get_write_buffer_size()))
            if tunnel.task is not None and tunnel.end is None and settled:
                tunnel.finish("stop", "between exchanges")
                tunnel.task.cancel()

    # -- one tunnel ---------------------------------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._next += 1
        tunnel = _Tunnel(self._next, peer_of(writer.get_extra_info("socket")), time.monotonic())
        tunnel.last = tunnel.started
        config = self.config
        if self._shutdown_task is not None:
            tunnel.finish("stop", "shutting down")
        elif len(self._tunnels) >= config.max_connections:
            tunnel.finish("refused-cap", f"{config.max_connections} tunnels open")
        elif self._per_peer.get(tunnel.peer, 0) >= config.max_connections_per_peer:
            tunnel.finish("refused-cap", f"{config.max_connections_per_peer} tunnels open from this peer")
        if tunnel.end is not None:
            writer.transport.abort()
            note = self._refusals.admit()
            if note is not None:  # at most one line a second: a peer connecting in a loop cannot flood the log
                tunnel.detail += note
                self._log(tunnel)
            return
        self._tunnels.add(tunnel)
        self._per_peer[tunnel.peer] = self._per_peer.get(tunnel.peer, 0) + 1
        self._tasks.add(task)
        tunnel.task = task
        tunnel.writers.append(writer)
        try:
            await self._run(tunnel, reader)
        except asyncio.CancelledError:
            # The graceful stop cut this tunnel after its grace period: end quietly, or asyncio's stream
            # callback logs the cancellation as a traceback.
            tunnel.finish("stop")
        except Exception as exc:  # a bug must cost one tunnel, not the proxy
            tunnel.finish("target-closed", f"unexpected {type(exc).__name__}")
        finally:
            for side in tunnel.writers:
                if tunnel.end in ("idle", "lifetime", "stop"):
                    side.transport.abort()  # a cut tunnel drops what is still buffered
                else:
                    side.close()
            self._tunnels.discard(tunnel)
            left = self._per_peer.pop(tunnel.peer, 1) - 1
            if left:
                self._per_peer[tunnel.peer] = left
            self._tasks.discard(task)
            self._log(tunnel)

    def _log(self, tunnel: _Tunnel) -> None:
        end = tunnel.end or "target-closed"
        level = logging.WARNING if end in ("connect-failed", "refused-cap") else logging.INFO
        detail = f" ({escaped(tunnel.detail, 300)})" if tunnel.detail else ""
        logger.log(level, "tunnel conn=%d peer=%s target=%s ip=%s bytes_up=%d bytes_down=%d ms=%.0f end=%s%s",
                   tunnel.number, tunnel.peer, self.config.target_text, tunnel.ip, tunnel.up, tunnel.down,
                   (time.monotonic() - tunnel.started) * 1000, end, detail)

    async def _run(self, tunnel: _Tunnel, client_reader: asyncio.StreamReader) -> None:
        config = self.config
        deadline = tunnel.started + config.max_tunnel_lifetime
        try:
            async with asyncio.timeout(config.max_tunnel_lifetime):
                resolved = await self.resolver.resolve(config.target_host)
                target = await self._connect(tunnel, resolved.addresses)
        except DnsError as exc:
            tunnel.finish("connect-failed", f"dns: {exc}")
            return
        except TimeoutError:
            tunnel.finish("lifetime", "while connecting")
            return
        if target is None:
            return
        target_reader, target_writer = target
        tunnel.writers.append(target_writer)
        tunnel.last = time.monotonic()
        up = asyncio.create_task(self._pump(tunnel, client_reader, target_writer, "up"))
        down = asyncio.create_task(self._pump(tunnel, target_reader, tunnel.writers[0], "down"))
        pending: set[asyncio.Task[str | None]] = {up, down}
        try:
            while pending:
                now = time.monotonic()
                idle_at = tunnel.last + config.idle_timeout
                if min(idle_at, deadline) <= now:
                    tunnel.finish("lifetime" if deadline <= idle_at else "idle")
                    return
                done, pending = await asyncio.wait(pending, timeout=min(idle_at, deadline) - now,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    failed = task.result()
                    if failed is not None:  # a side failed or cannot be half-closed: the tunnel ends
                        tunnel.finish(f"{failed}-closed")
                        return
            tunnel.finish(f"{tunnel.first_close or 'target'}-closed")
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _connect(self, tunnel: _Tunnel, addresses: tuple[str, ...]
                       ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        problems: list[str] = []
        for ip in addresses[:MAX_CONNECT_TRIES]:
            tunnel.ip = ip
            try:
                reader, writer = await open_connection(TcpAddress(host=ip, port=self.config.target_port),
                                                       timeout=self.config.connect_timeout,
                                                       limit=self.config.buffer_size)
            except WireError as exc:
                problems.append(str(exc))
                continue
            writer.transport.set_write_buffer_limits(high=self.config.buffer_size)
            tunnel.writers[0].transport.set_write_buffer_limits(high=self.config.buffer_size)
            return reader, writer
        tunnel.finish("connect-failed", "; ".join(problems) or "no address")
        return None

    async def _pump(self, tunnel: _Tunnel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> str | None:
        """Copy ``reader`` to ``writer`` until end of file, then half-close ``writer``. Returns None, or the side
        ("client", "target") whose failure ends the tunnel."""
        source, sink = ("client", "target") if direction == "up" else ("target", "client")
        size = self.config.buffer_size
        while True:
            try:
                data = await reader.read(size)
            except OSError:
                return source
            if not data:
                break
            tunnel.last = time.monotonic()
            tunnel.last_direction = direction
            if direction == "up":
                tunnel.up += len(data)
            else:
                tunnel.down += len(data)
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                return sink
        if tunnel.first_close is None:
            tunnel.first_close = source
        if not writer.can_write_eof():
            return source
        try:
            writer.write_eof()
        except OSError:
            return sink
        return None


class TunnelThread(ServerThread[TunnelProxy]):
    """A :class:`TunnelProxy` on its own event loop in a background thread, for tests and the demo::

        with TunnelThread(config, credentials_source=source) as running:
            running.address, running.credentials_address
    """

    def __init__(self, config: TunnelConfig, *, credentials_source: CredentialsSource | None = None,
                 resolver: Resolver | None = None) -> None:
        super().__init__(TunnelProxy(config, credentials_source=credentials_source, resolver=resolver),
                         name="tunnel")

    @property
    def proxy(self) -> TunnelProxy:
        return self.server

    @property
    def credentials_address(self) -> Address | None:
        return self.server.credentials_address
