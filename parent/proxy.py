"""The parent proxy: an asyncio server that relays enclaves' KMS requests to AWS KMS with boto3.

::

    proxy = ParentProxy(ProxyConfig(listen="vsock://any:8000", region="eu-west-1"))
    address = await proxy.start()       # bound address (the real port when TCP port 0 was asked)
    await proxy.serve()                 # until proxy.request_stop() (SIGTERM in the CLI), then drains

    with ProxyThread(ProxyConfig(listen="tcp://127.0.0.1:0"), kms_client=client) as running:
        WireClient(running.address).call("GenerateRandom", ...)

The serving is :class:`nitrokit.wire.server.WireServer`'s (docs/protocol.md): connections, frames, calls in
flight per connection, read and idle timeouts, protocol-error refusals and the graceful stop, all bounded by
the :class:`~nitrokit.wire.server.ServerLimits` the config builds. This module adds what is the parent's own:
KMS calls in flight overall (``max_inflight`` worker threads; a call waits at most ``queue_timeout`` for one,
else ``Busy``), a total deadline per KMS call (``kms_call_timeout``, retries included: past it the enclave is
answered ``KmsTimeout`` and the worker is abandoned, its sockets shut down) and the relay itself. A worker
keeps its slot until its thread has really ended, so abandoned calls never add threads beyond
``max_inflight``; the threads are daemons, so a stop never waits for one. A slow, stalled or hostile peer
only ever holds its own connection.

The operator chooses which KMS operations to relay (``operations``: by default all five of the wire table,
GenerateRandom, Decrypt, GenerateDataKey, GenerateDataKeyPair and DeriveSharedSecret); a request for another is
refused ``UnknownOperation``. Requests are checked before anything is sent to KMS; a request without Recipient
is refused (``allow_plaintext`` relaxes that for GenerateRandom alone: key operations always need one); an
answer carrying the operation's secret (Plaintext, PrivateKeyPlaintext, SharedSecret) to a request with
Recipient is dropped. One log line per call
(operation, id, outcome, milliseconds) on the ``nitrokit.parent`` logger; bodies are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from nitrokit.errors import UsageError
from nitrokit.parent._kms import KmsCall, KmsRelay, check_result
from nitrokit.wire import (
    GENERATE_RANDOM,
    OPERATIONS,
    Address,
    ErrorCode,
    InvalidRequestError,
    Request,
    parse_address,
)
from nitrokit.wire.server import (
    CallFailed,
    ServerLimits,
    ServerThread,
    WireServer,
    check_count,
    check_seconds,
)

__all__ = ["DEFAULT_LISTEN", "ParentProxy", "ProxyConfig", "ProxyThread", "check_operations"]

#: What the enclave reaches as vsock://3:8000.
DEFAULT_LISTEN = "vsock://any:8000"


_SERVER_DEFAULTS = ServerLimits()


@dataclass(frozen=True)
class ProxyConfig:
    """Everything the proxy needs; every limit has a default and a bound (times in seconds)."""

    listen: str | Address = DEFAULT_LISTEN
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    #: relay GenerateRandom requests without a Recipient (their answers carry Plaintext through the parent);
    #: key operations are relayed only with a Recipient, whatever this says
    allow_plaintext: bool = False
    #: the KMS operations to relay (names of the wire table, nitrokit.wire.OPERATIONS; default all of them)
    operations: tuple[str, ...] = tuple(OPERATIONS)
    #: KMS calls in flight overall (= worker threads = boto3 connection pool)
    max_inflight: int = 32
    #: how long a call may wait for a free worker before it is answered Busy
    queue_timeout: float = 5.0
    # The server's limits, as ServerLimits documents them (same defaults):
    max_connections: int = _SERVER_DEFAULTS.max_connections
    max_inflight_per_connection: int = _SERVER_DEFAULTS.max_inflight_per_connection
    max_frame_size: int = _SERVER_DEFAULTS.max_frame_size
    read_timeout: float = _SERVER_DEFAULTS.read_timeout
    idle_timeout: float = _SERVER_DEFAULTS.idle_timeout
    grace_period: float = _SERVER_DEFAULTS.grace_period
    kms_connect_timeout: float = 2.0
    #: per read from KMS (botocore's); a KMS that answers a byte at a time is cut by kms_call_timeout
    kms_read_timeout: float = 5.0
    #: attempts per call, including botocore's standard-mode retries
    kms_max_attempts: int = 3
    #: the whole KMS call, all attempts included: then the enclave gets KmsTimeout (retryable)
    kms_call_timeout: float = 10.0
    #: connections open at once from one peer (vsock CID, Unix peer uid, or TCP host)
    max_connections_per_peer: int = _SERVER_DEFAULTS.max_connections_per_peer

    #: the server's part of the above (built and checked on creation)
    limits: ServerLimits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parse_address(self.listen)
        check_operations(self.operations)
        object.__setattr__(self, "limits", ServerLimits(
            max_connections=self.max_connections, max_connections_per_peer=self.max_connections_per_peer,
            max_inflight_per_connection=self.max_inflight_per_connection,
            max_frame_size=self.max_frame_size, read_timeout=self.read_timeout, idle_timeout=self.idle_timeout,
            grace_period=self.grace_period))
        check_count("max_inflight", self.max_inflight, 1, 1024)
        check_count("kms_max_attempts", self.kms_max_attempts, 1, 10)
        for name in ("queue_timeout", "kms_connect_timeout", "kms_read_timeout", "kms_call_timeout"):
            check_seconds(name, getattr(self, name))


def check_operations(operations: object) -> tuple[str, ...]:
    """``operations`` if it is a non-empty tuple of distinct names from the wire table; else :class:`UsageError`."""
    known = ", ".join(OPERATIONS)
    if not isinstance(operations, tuple) or not operations:
        raise UsageError(f"operations must be a non-empty tuple of operation names from: {known}")
    for name in operations:
        if name not in OPERATIONS:
            shown = name if isinstance(name, str) and name.isidentifier() and len(name) <= 64 else "(not a name)"
            raise UsageError(f"operation {shown} is not one the parent can relay ({known})")
    if len(set(operations)) != len(operations):
        raise UsageError("operations names an operation twice")
    return operations


class ParentProxy:
    """The proxy server. ``kms_client`` replaces the boto3 client built from the config (tests, the demo)."""

    def __init__(self, config: ProxyConfig, *, kms_client: Any | None = None) -> None:
        self.config = config
        self._kms_client = kms_client
        self._relay: KmsRelay | None = None
        self._slots: asyncio.Semaphore | None = None
        self._workers: _DaemonWorkers | None = None
        self._server = WireServer(config.limits, self._execute, operations=config.operations, name="parent")

    @property
    def address(self) -> Address:
        """The bound address (after :meth:`start`)."""
        return self._server.address

    @property
    def connections(self) -> int:
        return self._server.connections

    async def start(self) -> Address:
        """Build the KMS client, bind and start accepting. Returns the bound address."""
        if self._relay is not None:
            return self.address
        config = self.config
        relay = KmsRelay(
            region=config.region, endpoint_url=config.endpoint_url, profile=config.profile,
            connect_timeout=config.kms_connect_timeout, read_timeout=config.kms_read_timeout,
            max_attempts=config.kms_max_attempts, max_pool_connections=config.max_inflight, client=self._kms_client)
        self._slots = asyncio.Semaphore(config.max_inflight)
        self._workers = _DaemonWorkers(config.max_inflight)
        detail = (f"KMS endpoint {relay.endpoint}, region {relay.region}, operations {','.join(config.operations)}, "
                  f"plaintext {'allowed for GenerateRandom' if config.allow_plaintext else 'refused'}")
        address = await self._server.start(config.listen, detail=detail)
        self._relay = relay
        return address

    async def serve(self) -> None:
        """Serve until :meth:`request_stop`, then stop accepting, let calls in flight finish, and return."""
        await self.start()
        await self._server.serve()
        await self.stop()

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call more than once; from the event loop's thread)."""
        self._server.request_stop()

    async def stop(self) -> None:
        """Stop accepting, finish calls in flight (at most ``grace_period``), close everything.

        Calls still in flight after the grace period are abandoned (their KMS sockets shut down), not
        waited for: the stop takes at most the grace period and about a second more.
        """
        await self._server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _execute(self, request: Request) -> dict[str, Any]:
        """Check and relay one request; return the KMS JSON answer or raise ``CallFailed``."""
        assert self._relay is not None and self._slots is not None
        operation = OPERATIONS[request.operation]
        try:
            params = operation.decode_request(request.request)
        except InvalidRequestError as exc:
            raise CallFailed(ErrorCode.INVALID_REQUEST, str(exc)) from None
        if "Recipient" not in params:
            if operation is not GENERATE_RANDOM:
                raise CallFailed(ErrorCode.RECIPIENT_REQUIRED,
                                 f"{operation.name} without Recipient would return {operation.plaintext_member} "
                                 "through the parent; send a Recipient (the parent relays key operations only with "
                                 "one)")
            if not self.config.allow_plaintext:
                raise CallFailed(ErrorCode.RECIPIENT_REQUIRED,
                                 f"{operation.name} without Recipient would return plaintext through the parent; "
                                 "send a Recipient (the parent runs without --allow-plaintext)")
        try:
            async with asyncio.timeout(self.config.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise CallFailed(ErrorCode.BUSY, "all KMS workers are busy; try again later", retryable=True) from None
        timeout = self.config.kms_call_timeout
        call = KmsCall(timeout)
        answer = self._start_worker(operation, params, call)
        try:
            async with asyncio.timeout(timeout):
                result = await answer
        except TimeoutError:
            call.abandon()
            raise CallFailed(ErrorCode.KMS_TIMEOUT, f"KMS gave no whole answer within {timeout:g} s (the call's "
                             "deadline, retries included); nothing was received", retryable=True) from None
        except asyncio.CancelledError:
            call.abandon()  # the graceful stop is over: the worker ends now instead of waiting on KMS
            raise
        return check_result(operation, params, result)

    def _start_worker(self, operation: Any, params: Any, call: KmsCall) -> asyncio.Future[dict[str, Any]]:
        """Run the KMS call in a daemon thread that holds a slot until it ends; its answer comes in the future."""
        assert self._relay is not None and self._slots is not None
        relay, slots = self._relay, self._slots
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any]] = loop.create_future()

        def deliver(result: dict[str, Any] | None, error: BaseException | None) -> None:
            slots.release()
            if answer.done():  # abandoned: nobody waits for it any more
                return
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(result or {})

        def work() -> None:
            result: dict[str, Any] | None = None
            error: BaseException | None = None
            try:
                result = relay.invoke(operation, params, call)
            except BaseException as exc:  # delivered to the awaiting call, where it is mapped
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: the proxy has stopped
                loop.call_soon_threadsafe(deliver, result, error)

        assert self._workers is not None
        try:
            self._workers.submit(work)
        except BaseException:
            slots.release()
            raise
        return answer


class _DaemonWorkers:
    """Up to ``size`` daemon threads running submitted jobs, started as needed and never joined.

    What ThreadPoolExecutor does, minus the join at interpreter exit that made a stop wait for a worker
    stuck on KMS. Callers bound the jobs in flight to ``size`` (the proxy's slots), so a job never waits for
    a thread for long.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0 and self._threads < self._size
            if start:
                self._threads += 1
            else:
                self._idle -= 1  # this idle thread is taken by the job
        if start:
            threading.Thread(target=self._run, args=(job,), name="nitrokit-kms", daemon=True).start()
        else:
            self._jobs.put(job)

    def _run(self, job: Callable[[], None]) -> None:
        while True:
            job()
            with self._lock:
                self._idle += 1
            job = self._jobs.get()


class ProxyThread(ServerThread[ParentProxy]):
    """A :class:`ParentProxy` on its own event loop in a background thread, for tests and the demo::

        with ProxyThread(ProxyConfig(listen="unix:///tmp/p.sock"), kms_client=kms) as running:
            running.address  # where to connect
    """

    def __init__(self, config: ProxyConfig, *, kms_client: Any | None = None) -> None:
        super().__init__(ParentProxy(config, kms_client=kms_client), name="parent")

    @property
    def proxy(self) -> ParentProxy:
        return self.server
