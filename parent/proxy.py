"""The parent proxy: an asyncio server that relays enclaves' KMS requests to AWS KMS with boto3.

::

    proxy = ParentProxy(ProxyConfig(listen="vsock://any:8000", region="eu-west-1"))
    address = await proxy.start()       # bound address (the real port when TCP port 0 was asked)
    await proxy.serve()                 # until proxy.request_stop() (SIGTERM in the CLI), then drains

    with ProxyThread(ProxyConfig(listen="tcp://127.0.0.1:0"), kms_client=client) as running:
        WireClient(running.address).call("GenerateRandom", ...)

Each connection carries requests one frame at a time (docs/protocol.md). Everything a peer can make the
parent hold is bounded: connections (``max_connections``; over it, a ``Busy`` answer and a close), frame size,
calls in flight per connection (the next frame is not read until one finishes) and overall (a worker thread
each; a call waits at most ``queue_timeout`` for one, else ``Busy``), the time to send a whole frame once it
started (``read_timeout``), the time between frames (``idle_timeout``) and the time to take an answer. A
slow, stalled or hostile peer only ever holds its own connection.

Requests are checked before anything is sent to KMS; a request without Recipient is refused unless
``allow_plaintext``; an answer with Plaintext to a request with Recipient is dropped. One log line per call
(operation, id, outcome, milliseconds) on the ``nitrokit.parent`` logger; bodies are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from common.errors import UsageError
from common.wire import (
    MAX_FRAME_SIZE,
    OPERATIONS,
    Address,
    ConnectionClosedError,
    ErrorCode,
    ErrorInfo,
    IdleTimeoutError,
    InvalidRequestError,
    ProtocolError,
    Request,
    Response,
    TransportError,
    UnixAddress,
    WireError,
    WireTimeoutError,
    bound_address,
    decode_request,
    encode_response,
    listen,
    parse_address,
    read_frame,
    write_frame,
)
from parent._kms import CallFailed, KmsRelay, check_result

__all__ = ["DEFAULT_LISTEN", "ParentProxy", "ProxyConfig", "ProxyThread"]

logger = logging.getLogger("nitrokit.parent")

#: What the enclave reaches as vsock://3:8000.
DEFAULT_LISTEN = "vsock://any:8000"


@dataclass(frozen=True)
class ProxyConfig:
    """Everything the proxy needs; every limit has a default and a bound (times in seconds)."""

    listen: str | Address = DEFAULT_LISTEN
    region: str | None = None
    endpoint_url: str | None = None
    profile: str | None = None
    #: relay requests without a Recipient (their answers carry Plaintext through the parent)
    allow_plaintext: bool = False
    max_connections: int = 128
    #: KMS calls in flight overall (= worker threads = boto3 connection pool)
    max_inflight: int = 32
    max_inflight_per_connection: int = 4
    max_frame_size: int = MAX_FRAME_SIZE
    #: once a frame has started, the rest must arrive within this; also the limit for a peer to take an answer
    read_timeout: float = 10.0
    #: a connection with no call in flight and no frame started is closed after this
    idle_timeout: float = 120.0
    #: how long a call may wait for a free worker before it is answered Busy
    queue_timeout: float = 5.0
    #: on stop, how long calls in flight may take to finish before their connections are cut
    grace_period: float = 30.0
    kms_connect_timeout: float = 2.0
    kms_read_timeout: float = 5.0
    #: attempts per call, including botocore's standard-mode retries
    kms_max_attempts: int = 3

    def __post_init__(self) -> None:
        parse_address(self.listen)
        for name, low, high in (("max_connections", 1, 65536), ("max_inflight", 1, 1024),
                                ("max_inflight_per_connection", 1, 1024), ("max_frame_size", 1024, MAX_FRAME_SIZE),
                                ("kms_max_attempts", 1, 10)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise UsageError(f"{name} must be an integer from {low} to {high}, not {value!r}")
        for name in ("read_timeout", "idle_timeout", "queue_timeout", "grace_period", "kms_connect_timeout",
                     "kms_read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 86400:
                raise UsageError(f"{name} must be a number of seconds above 0 and at most 86400, not {value!r}")


class ParentProxy:
    """The proxy server. ``kms_client`` replaces the boto3 client built from the config (tests, the demo)."""

    def __init__(self, config: ProxyConfig, *, kms_client: Any | None = None) -> None:
        self.config = config
        self._kms_client = kms_client
        self._relay: KmsRelay | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._server: asyncio.Server | None = None
        self._address: Address | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._stop_requested: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._next_connection = 0

    @property
    def address(self) -> Address:
        """The bound address (after :meth:`start`)."""
        if self._address is None:
            raise UsageError("the proxy is not started")
        return self._address

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> Address:
        """Build the KMS client, bind and start accepting. Returns the bound address."""
        if self._server is not None:
            return self.address
        config = self.config
        self._stop_requested = asyncio.Event()
        self._slots = asyncio.Semaphore(config.max_inflight)
        self._relay = KmsRelay(
            region=config.region, endpoint_url=config.endpoint_url, profile=config.profile,
            connect_timeout=config.kms_connect_timeout, read_timeout=config.kms_read_timeout,
            max_attempts=config.kms_max_attempts, max_pool_connections=config.max_inflight, client=self._kms_client)
        self._executor = ThreadPoolExecutor(max_workers=config.max_inflight, thread_name_prefix="nitrokit-kms")
        sock = listen(config.listen)
        try:
            self._address = bound_address(sock, config.listen)
            self._server = await asyncio.start_server(self._on_client, sock=sock)
        except BaseException:
            sock.close()
            self._executor.shutdown(wait=False)
            raise
        logger.info("listening on %s (KMS endpoint %s, region %s, plaintext %s)", self._address,
                    self._relay.endpoint, self._relay.region, "allowed" if config.allow_plaintext else "refused")
        return self._address

    async def serve(self) -> None:
        """Serve until :meth:`request_stop`, then stop accepting, let calls in flight finish, and return."""
        await self.start()
        assert self._stop_requested is not None
        await self._stop_requested.wait()
        await self.stop()

    def request_stop(self) -> None:
        """Begin a graceful stop (safe to call more than once; from the event loop's thread)."""
        if self._stop_requested is None or self._shutdown_task is not None:
            return
        self._stop_requested.set()
        self._shutdown_task = asyncio.get_running_loop().create_task(self._shutdown())

    async def stop(self) -> None:
        """Stop accepting, finish calls in flight (at most ``grace_period``), close everything."""
        self.request_stop()
        if self._shutdown_task is not None:
            await asyncio.shield(self._shutdown_task)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _shutdown(self) -> None:
        assert self._server is not None and self._executor is not None
        started = time.perf_counter()
        self._server.close()
        logger.info("stopping: no new connections; %d open", len(self._connections))
        for connection in list(self._connections):
            connection.stop_reading()
        handlers = set(self._handlers)
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=self.config.grace_period)
            for connection in list(self._connections):
                connection.abort()
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
                logger.warning("stopped %d connection(s) with calls still in flight after the grace period", len(late))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 1.0)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if isinstance(self._address, UnixAddress):
            with contextlib.suppress(OSError):
                os.unlink(self._address.path)
        logger.info("stopped in %.0f ms", (time.perf_counter() - started) * 1000)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._next_connection += 1
        number = self._next_connection
        if self._shutdown_task is not None or len(self._connections) >= self.config.max_connections:
            busy = self._shutdown_task is None
            logger.warning("conn=%d refused: %s", number, "too many connections" if busy else "shutting down")
            code, message = ((ErrorCode.BUSY, "too many connections; try again later") if busy
                             else (ErrorCode.SHUTTING_DOWN, "the parent is shutting down"))
            with contextlib.suppress(WireError):
                await write_frame(writer, encode_response(Response(id=None, error=ErrorInfo(code, message, True))),
                                  timeout=1.0)
            writer.close()
            return
        connection = _Connection(self, number, reader, writer)
        self._connections.add(connection)
        self._handlers.add(task)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)
            self._handlers.discard(task)

    async def _execute(self, request: Request) -> dict[str, Any]:
        """Check and relay one request; return the KMS JSON answer or raise ``CallFailed``."""
        assert self._relay is not None and self._slots is not None
        operation = OPERATIONS[request.operation]
        try:
            params = operation.decode_request(request.request)
        except InvalidRequestError as exc:
            raise CallFailed(ErrorCode.INVALID_REQUEST, str(exc)) from None
        if "Recipient" not in params and not self.config.allow_plaintext:
            raise CallFailed(ErrorCode.RECIPIENT_REQUIRED,
                             f"{operation.name} without Recipient would return plaintext through the parent; "
                             "send a Recipient (the parent runs without --allow-plaintext)")
        try:
            async with asyncio.timeout(self.config.queue_timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise CallFailed(ErrorCode.BUSY, "all KMS workers are busy; try again later", retryable=True) from None
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._relay.invoke, operation, params)
        finally:
            self._slots.release()
        return check_result(operation, params, result)


class _Connection:
    """One peer: reads frames, runs up to ``max_inflight_per_connection`` calls, writes their answers."""

    def __init__(self, proxy: ParentProxy, number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.config = proxy.config
        self.number = number
        self.reader = reader
        self.writer = writer
        self.calls: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(self.config.max_inflight_per_connection)
        self.write_lock = asyncio.Lock()
        self.reader_task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        self.reader_task = asyncio.create_task(self._read_loop())
        try:
            await asyncio.wait({self.reader_task})
            # The peer may have half-closed after its last request: answer what is in flight, then close.
            while self.calls:
                await asyncio.wait(set(self.calls))
        finally:
            self.reader_task.cancel()
            for call in self.calls:
                call.cancel()
            self.writer.close()
            with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    def stop_reading(self) -> None:
        if self.reader_task is not None:
            self.reader_task.cancel()

    def abort(self) -> None:
        self.writer.transport.abort()

    async def _read_loop(self) -> None:
        config = self.config
        while True:
            await self.slots.acquire()
            try:
                body = await read_frame(self.reader, timeout=config.read_timeout, max_size=config.max_frame_size,
                                        idle_timeout=config.idle_timeout)
            except IdleTimeoutError:
                self.slots.release()
                if self.calls:
                    continue  # waiting for our answers is not idling
                logger.debug("conn=%d closed: idle", self.number)
                return
            except ConnectionClosedError as exc:
                self.slots.release()
                if not exc.clean:
                    logger.info("conn=%d closed by the peer in the middle of a frame", self.number)
                return
            except WireTimeoutError:
                self.slots.release()
                await self._refuse(ErrorCode.TIMEOUT, f"no whole frame within {config.read_timeout:g} s",
                                   retryable=True)
                return
            except ProtocolError as exc:  # length prefix 0 or over the limit: the body is never read
                self.slots.release()
                await self._refuse(exc.code, str(exc))
                return
            except TransportError:
                self.slots.release()
                return
            try:
                request = decode_request(body)
            except ProtocolError as exc:
                self.slots.release()
                await self._refuse(exc.code, str(exc), request_id=exc.request_id)
                return
            call = asyncio.create_task(self._call(request))
            self.calls.add(call)
            call.add_done_callback(self.calls.discard)

    async def _call(self, request: Request) -> None:
        started = time.perf_counter()
        try:
            try:
                response = Response(id=request.id, response=await self.proxy._execute(request))
                outcome = "ok"
            except CallFailed as exc:
                response = Response(id=request.id, error=exc.info)
                outcome = exc.info.code
            except Exception as exc:  # a bug must cost one call, not the connection or the server
                logger.error("conn=%d id=%s unexpected %s", self.number, request.id, type(exc).__name__)
                response = Response(id=request.id, error=ErrorInfo(ErrorCode.INTERNAL_ERROR,
                                                                   "internal error in the parent (see its log)"))
                outcome = ErrorCode.INTERNAL_ERROR
            logger.info("call op=%s id=%s conn=%d outcome=%s ms=%.1f", request.operation, request.id, self.number,
                        outcome, (time.perf_counter() - started) * 1000)
            await self._send(response)
        finally:
            self.slots.release()

    async def _refuse(self, code: str, message: str, *, retryable: bool = False,
                      request_id: str | None = None) -> None:
        logger.warning("conn=%d protocol error %s; closing", self.number, code)
        await self._send(Response(id=request_id, error=ErrorInfo(code, message, retryable)))

    async def _send(self, response: Response) -> None:
        if self.writer.is_closing():
            return
        body = encode_response(response)
        async with self.write_lock:
            try:
                await write_frame(self.writer, body, timeout=self.config.read_timeout, max_size=len(body))
            except WireError:
                # The peer does not take its answers (or is gone): cut it off, it holds nothing of the others.
                logger.info("conn=%d cut off: answer not taken", self.number)
                self.abort()
                self.stop_reading()


class ProxyThread:
    """A :class:`ParentProxy` on its own event loop in a background thread, for tests and the demo::

        with ProxyThread(ProxyConfig(listen="unix:///tmp/p.sock"), kms_client=kms) as running:
            running.address  # where to connect
    """

    def __init__(self, config: ProxyConfig, *, kms_client: Any | None = None) -> None:
        self.proxy = ParentProxy(config, kms_client=kms_client)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nitrokit-parent", daemon=True)

    @property
    def address(self) -> Address:
        return self.proxy.address

    def start(self, *, timeout: float = 30.0) -> Address:
        """Start the thread; return the bound address once the proxy listens (its start-up error, if any)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the proxy did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self.address

    def stop(self, *, timeout: float | None = None) -> None:
        """Stop gracefully (as on SIGTERM) and wait for the thread (at most ``timeout`` seconds)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(self.proxy.request_stop)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            await self.proxy.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self.proxy.serve()
