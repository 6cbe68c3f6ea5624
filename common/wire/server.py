"""A server for the wire protocol: frames in, one handler call per request, answers out, everything bounded.

The parent proxy (``nitrokit parent``, the KMS relay) and the enclave service (``nitrokit enclave serve``)
are both this server with their own handler and operation allow-list::

    async def handler(request: Request) -> Mapping[str, Any]:
        if request.request.get("Nope"):
            raise CallFailed(ErrorCode.INVALID_REQUEST, "no thanks")   # an error response; the connection stays open
        return {"Echo": request.request["Text"]}            # the response JSON

    server = WireServer(ServerLimits(max_connections=16), handler, operations={"Echo"}, name="echo")
    address = await server.start("unix:///run/echo.sock")   # the bound address (real port for tcp://...:0)
    await server.serve()                                    # until server.request_stop(), then a graceful stop

    with ServerThread(WireServer(limits, handler, listen="tcp://127.0.0.1:0")) as running:  # tests, demos
        WireClient(running.address).call(...)

    raise SystemExit(run_until_signal(server, on_listening=print))   # a CLI: SIGTERM/SIGINT stop it gracefully

What a peer can make the server hold is bounded by :class:`ServerLimits`: connections, overall and per peer (over
either limit, a ``Busy`` answer and a close, logged at most once a second by :class:`RefusalLog`; a peer is a vsock
CID, a Unix peer's uid, or a TCP host, so one enclave cannot take every connection from the others), the frame
size, calls in flight per connection (the next frame is not read until one finishes), the time to send a whole
frame once it started (``read_timeout``), the time between frames (``idle_timeout``) and the time to take an answer
(``read_timeout`` again, then the connection is cut). A protocol error (malformed frame, unknown version or
operation, frame too large, a frame not finished in time) is answered and closes the connection; a
:class:`CallFailed` from the handler is an error response on a connection that stays open; any other exception from
the handler costs that one call an ``InternalError``, never the connection or the server. A slow, stalled or
hostile peer only ever holds its own connection.

One log line per call on the ``nitrokit.<name>`` logger: ``call op= id= conn= outcome= ms=``; a call still
in flight when the grace period of a stop ends is logged with ``outcome=abandoned``. Bodies are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from nitrokit.errors import InputTooLargeError, NitrokitError, UsageError
from nitrokit.wire.address import LISTEN_BACKLOG, Address, UnixAddress, bound_address, parse_address
from nitrokit.wire.address import listen as listen_socket
from nitrokit.wire.errors import (
    ConnectionClosedError,
    ErrorCode,
    IdleTimeoutError,
    ProtocolError,
    TransportError,
    WireError,
    WireTimeoutError,
)
from nitrokit.wire.framing import MAX_FRAME_SIZE, read_frame, write_frame
from nitrokit.wire.kms import OPERATIONS
from nitrokit.wire.messages import ErrorInfo, Request, Response, decode_request, encode_response

__all__ = [
    "MAX_SECONDS",
    "REFUSAL_LOG_INTERVAL",
    "CallFailed",
    "Handler",
    "RefusalLog",
    "ServerLimits",
    "ServerThread",
    "Serving",
    "WireServer",
    "check_count",
    "check_seconds",
    "peer_of",
    "run_until_signal",
]

#: The longest any configurable wait may be (one day).
MAX_SECONDS = 86400.0

#: Connections refused at once (over a cap, or while stopping) are logged at most once per this many seconds.
REFUSAL_LOG_INTERVAL = 1.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def check_count(name: str, value: object, low: int, high: int) -> None:
    """Raise :class:`UsageError` naming ``name`` unless ``value`` is an integer (not a bool) in ``low..high``."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UsageError(f"{name} must be an integer from {low} to {high}, not {value!r}")


def check_seconds(name: str, value: object) -> None:
    """Raise :class:`UsageError` naming ``name`` unless ``value`` is a number of seconds in (0, 86400]."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= MAX_SECONDS:
        raise UsageError(f"{name} must be a number of seconds above 0 and at most {MAX_SECONDS:g}, not {value!r}")


@dataclass(frozen=True, kw_only=True)
class ServerLimits:
    """Everything a peer can make the server hold, bounded (times in seconds). Checked on creation."""

    #: open connections; one more is answered ``Busy`` (retryable) and closed
    max_connections: int = 128
    #: open connections from one peer (vsock CID, Unix peer uid, TCP host); one more is answered ``Busy``
    max_connections_per_peer: int = 64
    #: calls in flight per connection; the server stops reading the connection until one finishes
    max_inflight_per_connection: int = 4
    #: the largest frame accepted (at most the protocol's :data:`~nitrokit.wire.MAX_FRAME_SIZE`)
    max_frame_size: int = MAX_FRAME_SIZE
    #: once a frame has started, the rest must arrive within this; also the limit for a peer to take an answer
    read_timeout: float = 10.0
    #: a connection with no call in flight and no frame started is closed after this
    idle_timeout: float = 120.0
    #: on stop, how long calls in flight may take to finish before their connections are cut
    grace_period: float = 30.0

    def __post_init__(self) -> None:
        check_count("max_connections", self.max_connections, 1, 65536)
        check_count("max_connections_per_peer", self.max_connections_per_peer, 1, 65536)
        check_count("max_inflight_per_connection", self.max_inflight_per_connection, 1, 1024)
        check_count("max_frame_size", self.max_frame_size, 1024, MAX_FRAME_SIZE)
        for name in ("read_timeout", "idle_timeout", "grace_period"):
            check_seconds(name, getattr(self, name))


class RefusalLog:
    """Which refused connections get a log line: at most one per ``interval`` seconds, so a peer connecting in a
    loop over its cap cannot flood the log (journald's rate limit would then drop every line of the service).
    Shared by the wire servers (relay mode, the credentials channel) and the tunnel::

        note = refusals.admit()
        if note is not None:                      # None: this one is only counted
            logger.warning("conn=%d refused: %s%s", number, reason, note)   # note: "" or "; N more refused ..."
    """

    def __init__(self, interval: float = REFUSAL_LOG_INTERVAL, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._logged: float | None = None
        self._unlogged = 0

    def admit(self) -> str | None:
        """Count one refusal: None if it is not to be logged, else the note to end its line with (``""``, or
        ``"; N more refused before this one, not logged"``)."""
        now = self.clock()
        if self._logged is not None and now - self._logged < self.interval:
            self._unlogged += 1
            return None
        note = f"; {self._unlogged} more refused before this one, not logged" if self._unlogged else ""
        self._logged, self._unlogged = now, 0
        return note


class CallFailed(NitrokitError):
    """Raised by a handler: the call ends with this error response (``.info``); the connection stays open.

    ``code`` is an :class:`~nitrokit.wire.ErrorCode` or another service's own code (1 to 128 characters from
    ``A-Z a-z 0-9 . _ : -``); ``message`` is for people and must not carry secrets or request bodies.
    """

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.info = ErrorInfo(code=code, message=message, retryable=retryable)


#: Answers one request: returns the response JSON, or raises :class:`CallFailed` for an error response.
Handler = Callable[[Request], Awaitable[Mapping[str, Any]]]


class WireServer:
    """Serve the wire protocol with ``handler``; see the module docstring.

    ``operations`` is the allow-list of operation names (a request for another is refused ``UnknownOperation``
    and its connection closed); ``name`` names the logger (``nitrokit.<name>``), the worker thread and the
    server in messages; ``listen`` is where :meth:`start` binds when it is given no address.
    """

    def __init__(
        self, limits: ServerLimits, handler: Handler, *, operations: Collection[str] = OPERATIONS,
        name: str = "server", listen: str | Address | None = None,
    ) -> None:
        if not isinstance(limits, ServerLimits):
            raise UsageError(f"limits must be a ServerLimits, not {type(limits).__name__}")
        if isinstance(operations, str) or not operations or not all(isinstance(op, str) for op in operations):
            raise UsageError("operations must be a non-empty collection of operation names")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise UsageError("a server name is 1 to 64 characters from A-Z a-z 0-9 . _ - (not starting with . _ -)")
        self.limits = limits
        self.handler = handler
        self.operations: tuple[str, ...] = tuple(operations)
        self.name = name
        self.logger = logging.getLogger(f"nitrokit.{name}")
        self._listen = parse_address(listen) if listen is not None else None
        self._server: asyncio.Server | None = None
        self._address: Address | None = None
        self._connections: set[_Connection] = set()
        self._per_peer: dict[str, int] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._stop_requested: asyncio.Event | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._next_connection = 0
        self._refusals = RefusalLog()

    @property
    def address(self) -> Address:
        """The bound address (after :meth:`start`)."""
        if self._address is None:
            raise UsageError(f"the {self.name} is not started")
        return self._address

    @property
    def connections(self) -> int:
        """Connections open now."""
        return len(self._connections)

    async def start(self, listen: str | Address | None = None, *, detail: str | None = None) -> Address:
        """Bind ``listen`` (or the ``listen`` given at creation) and start accepting; return the bound address.

        ``detail`` is appended to the "listening on" log line. A second call returns the address at once.
        """
        if self._server is not None:
            return self.address
        requested = listen if listen is not None else self._listen
        if requested is None:
            raise UsageError(f"the {self.name} has no address to listen on: pass one to start()")
        sock = listen_socket(requested)
        try:
            self._address = bound_address(sock, requested)
            # asyncio calls listen() again with its own backlog (100 by default): keep ours.
            self._server = await asyncio.start_server(self._on_client, sock=sock, backlog=LISTEN_BACKLOG)
        except BaseException:
            sock.close()
            self._address = None
            raise
        self._stop_requested = asyncio.Event()
        if detail:
            self.logger.info("listening on %s (%s)", self._address, detail)
        else:
            self.logger.info("listening on %s", self._address)
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
        assert self._server is not None
        logger = self.logger
        started = time.perf_counter()
        self._server.close()
        logger.info("stopping: no new connections; %d open", len(self._connections))
        for connection in list(self._connections):
            connection.stop_reading()
        handlers = set(self._handlers)
        # At most the grace period, then one second for everything else: calls still in flight are abandoned
        # (their handlers cancelled, one log line each), never waited for.
        last_second = asyncio.get_running_loop().time() + self.limits.grace_period + 1.0
        if handlers:
            _, late = await asyncio.wait(handlers, timeout=self.limits.grace_period)
            for connection in list(self._connections):
                connection.abandon_calls()
                connection.abort()
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=max(0.0, last_second - asyncio.get_running_loop().time()))
                logger.warning("stopped %d connection(s) with calls still in flight after the grace period", len(late))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(),
                                   max(0.01, last_second - asyncio.get_running_loop().time()))
        if isinstance(self._address, UnixAddress):
            with contextlib.suppress(OSError):
                os.unlink(self._address.path)
        logger.info("stopped in %.0f ms", (time.perf_counter() - started) * 1000)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._next_connection += 1
        number = self._next_connection
        peer = peer_of(writer.get_extra_info("socket"))
        refusal: tuple[str, str, str] | None = None
        if self._shutdown_task is not None:
            refusal = ("shutting down", ErrorCode.SHUTTING_DOWN, f"the {self.name} is shutting down")
        elif len(self._connections) >= self.limits.max_connections:
            refusal = ("too many connections", ErrorCode.BUSY, "too many connections; try again later")
        elif self._per_peer.get(peer, 0) >= self.limits.max_connections_per_peer:
            refusal = (f"too many connections from {peer}", ErrorCode.BUSY,
                       f"too many connections from this peer (at most {self.limits.max_connections_per_peer}); "
                       "close one or try again later")
        if refusal is not None:
            reason, code, message = refusal
            note = self._refusals.admit()
            if note is not None:
                self.logger.warning("conn=%d refused: %s%s", number, reason, note)
            with contextlib.suppress(WireError):
                await write_frame(writer, encode_response(Response(id=None, error=ErrorInfo(code, message, True))),
                                  timeout=1.0)
            writer.close()
            return
        connection = _Connection(self, number, reader, writer)
        self._connections.add(connection)
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        self._handlers.add(task)
        try:
            await connection.run()
        except asyncio.CancelledError:
            # The graceful stop cut this connection after its grace period (its calls are logged as
            # abandoned): end quietly, or asyncio's stream callback logs the cancellation as a traceback.
            pass
        finally:
            self._connections.discard(connection)
            left = self._per_peer.pop(peer, 1) - 1
            if left:
                self._per_peer[peer] = left
            self._handlers.discard(task)


def peer_of(sock: socket.socket | None) -> str:
    """Who is at the other end of ``sock``, for the per-peer connection limit: ``vsock:CID``, ``unix:uid=N``
    (SO_PEERCRED) or ``tcp:HOST``. Any peer the system cannot name is ``unknown`` (one peer for the limit)."""
    if sock is None:
        return "unknown"
    try:
        family = sock.family
        if family == getattr(socket, "AF_VSOCK", None):
            return f"vsock:{sock.getpeername()[0]}"
        if family == socket.AF_UNIX:
            peercred = getattr(socket, "SO_PEERCRED", None)
            if peercred is None:
                return "unix"
            _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, peercred, struct.calcsize("3i")))
            return f"unix:uid={uid}"
        if family in (socket.AF_INET, socket.AF_INET6):
            return f"tcp:{sock.getpeername()[0]}"
    except (OSError, struct.error, IndexError, TypeError):
        pass
    return "unknown"


class _Connection:
    """One peer: reads frames, runs up to ``max_inflight_per_connection`` calls, writes their answers."""

    def __init__(self, server: WireServer, number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.limits = server.limits
        self.logger = server.logger
        self.number = number
        self.reader = reader
        self.writer = writer
        self.calls: set[asyncio.Task[None]] = set()
        self.abandoning = False
        self.slots = asyncio.Semaphore(self.limits.max_inflight_per_connection)
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

    def abandon_calls(self) -> None:
        """The grace period is over: the calls still in flight are cancelled and logged as abandoned."""
        self.abandoning = True

    async def _read_loop(self) -> None:
        limits = self.limits
        while True:
            await self.slots.acquire()
            try:
                body = await read_frame(self.reader, timeout=limits.read_timeout, max_size=limits.max_frame_size,
                                        idle_timeout=limits.idle_timeout)
            except IdleTimeoutError:
                self.slots.release()
                if self.calls:
                    continue  # waiting for our answers is not idling
                self.logger.debug("conn=%d closed: idle", self.number)
                return
            except ConnectionClosedError as exc:
                self.slots.release()
                if not exc.clean:
                    self.logger.info("conn=%d closed by the peer in the middle of a frame", self.number)
                return
            except WireTimeoutError:
                self.slots.release()
                await self._refuse(ErrorCode.TIMEOUT, f"no whole frame within {limits.read_timeout:g} s",
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
                request = decode_request(body, operations=self.server.operations)
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
                body, outcome = await self._answer(request)
            except asyncio.CancelledError:
                if self.abandoning:
                    self.logger.warning("call op=%s id=%s conn=%d outcome=abandoned ms=%.1f (grace period over)",
                                        request.operation, request.id, self.number,
                                        (time.perf_counter() - started) * 1000)
                raise
            self.logger.info("call op=%s id=%s conn=%d outcome=%s ms=%.1f", request.operation, request.id,
                             self.number, outcome, (time.perf_counter() - started) * 1000)
            await self._send(body)
        finally:
            self.slots.release()

    async def _answer(self, request: Request) -> tuple[bytes, str]:
        """The encoded answer to ``request`` and the outcome to log."""
        try:
            try:
                result = await self.server.handler(request)
            except CallFailed as exc:
                return encode_response(Response(id=request.id, error=exc.info)), exc.info.code
            if not isinstance(result, Mapping):
                raise UsageError(f"the handler returned a {type(result).__name__}, not a mapping")
            body = encode_response(Response(id=request.id, response=result))
            if len(body) > MAX_FRAME_SIZE:
                raise InputTooLargeError("the answer", len(body), MAX_FRAME_SIZE)
            return body, "ok"
        except Exception as exc:  # a bug must cost one call, not the connection or the server
            self.logger.error("conn=%d id=%s unexpected %s", self.number, request.id, type(exc).__name__)
            error = ErrorInfo(ErrorCode.INTERNAL_ERROR, f"internal error in the {self.server.name} (see its log)")
            return encode_response(Response(id=request.id, error=error)), ErrorCode.INTERNAL_ERROR

    async def _refuse(self, code: str, message: str, *, retryable: bool = False,
                      request_id: str | None = None) -> None:
        self.logger.warning("conn=%d protocol error %s; closing", self.number, code)
        await self._send(encode_response(Response(id=request_id, error=ErrorInfo(code, message, retryable))))

    async def _send(self, body: bytes) -> None:
        if self.writer.is_closing():
            return
        async with self.write_lock:
            try:
                await write_frame(self.writer, body, timeout=self.limits.read_timeout, max_size=len(body))
            except WireError:
                # The peer does not take its answers (or is gone): cut it off, it holds nothing of the others.
                self.logger.info("conn=%d cut off: answer not taken", self.number)
                self.abort()
                self.stop_reading()


class Serving(Protocol):
    """What :class:`ServerThread` and :func:`run_until_signal` run: a :class:`WireServer`, or an object that owns
    one and its resources (``ParentProxy``, ``EnclaveService``)."""

    async def start(self) -> Address: ...

    def request_stop(self) -> None: ...

    async def stop(self) -> None: ...


_S = TypeVar("_S", bound=Serving)


class ServerThread(Generic[_S]):
    """A server on its own event loop in a background thread, for tests and demos::

        with ServerThread(WireServer(limits, handler, listen="unix:///tmp/s.sock")) as running:
            running.address  # where to connect

    ``name`` names the thread (``nitrokit-<name>``); by default the server's own ``name``.
    """

    def __init__(self, server: _S, *, name: str | None = None) -> None:
        self.server = server
        self.name = name if name is not None else str(getattr(server, "name", "server"))
        self._address: Address | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"nitrokit-{self.name}", daemon=True)

    @property
    def address(self) -> Address:
        """The bound address (after :meth:`start`)."""
        if self._address is None:
            raise UsageError(f"the {self.name} is not started")
        return self._address

    def start(self, *, timeout: float = 30.0) -> Address:
        """Start the thread; return the bound address once the server listens (or raise its start-up error)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the {self.name} did not start within {timeout:g} s")
        if self._error is not None:
            raise self._error
        return self.address

    def stop(self, *, timeout: float | None = None) -> None:
        """Stop gracefully (as on SIGTERM) and wait for the thread (at most ``timeout`` seconds)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                loop.call_soon_threadsafe(self._request_stop)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _request_stop(self) -> None:
        assert self._stop_requested is not None
        self._stop_requested.set()
        self.server.request_stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        try:
            self._address = await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._stop_requested = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop_requested.wait()
        await self.server.stop()


def run_until_signal(server: Serving, *, on_listening: Callable[[Address], None]) -> int:
    """Run ``server`` in this (main) thread until SIGTERM or SIGINT, then stop it gracefully; return 0.

    ``on_listening`` gets the bound address once the server listens (a CLI prints it as its first line);
    the signal handlers are in place before it is called. Start-up errors propagate.
    """
    return asyncio.run(_run_until_signal(server, on_listening))


async def _run_until_signal(server: Serving, on_listening: Callable[[Address], None]) -> int:
    address = await server.start()
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()

    def on_signal() -> None:
        stop_requested.set()
        server.request_stop()

    try:
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, on_signal)
        on_listening(address)
        await stop_requested.wait()
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
        await server.stop()
    return 0
