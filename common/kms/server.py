"""The simulated KMS over HTTP/1.1, and :class:`SimulatedKms`, its Python API for tests.

    from nitrokit.kms import SimulatedKms

    with SimulatedKms() as kms:            # a free loopback port, fixture root, AWS's example credentials
        client = kms.client()              # a plain boto3 KMS client pointed at kms.url
        client.generate_random(NumberOfBytes=32)

The server is the standard library's threaded HTTP server with keep-alive, bounded everywhere: at most
``max_connections`` connections at once (more get an immediate 503 and are closed), a per-read socket timeout
and one deadline for reading a whole request (request line, headers and body: a client dripping bytes is cut
off with a 408), and a body cap checked against Content-Length before anything is read. Bodies must come
with Content-Length: chunked requests are refused (411), oversized ones get 413, both with
``Connection: close``. Every answer is JSON with ``x-amzn-RequestId``.

With ``tls=True`` it serves HTTPS (TLS 1.2+) with a certificate issued at start by the fixture TLS CA
(:mod:`nitrokit.testing.tls`) for localhost, 127.0.0.1, ::1 and the region's KMS host names, or with a
certificate and key of the caller's. The handshake runs in the connection's own thread within
``handshake_timeout``, so a client that never finishes it holds only its own slot; over the connection limit
a TLS connection is closed unanswered (a 503 would have to wait for a handshake).
"""

from __future__ import annotations

import contextlib
import functools
import io
import ipaddress
import logging
import re
import socket
import ssl
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from nitrokit._extras import extra_required
from nitrokit.errors import UsageError
from nitrokit.kms._service import CONTENT_TYPE, Answer, KmsService
from nitrokit.kms.conditions import AttestationConditions
from nitrokit.kms.config import Faults, KmsSimConfig
from nitrokit.kms.errors import KmsServiceError
from nitrokit.kms.limits import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT,
    REQUEST_DEADLINE,
)
from nitrokit.kms_api import REGION_PATTERN, kms_endpoint_host
from nitrokit.text import escaped

if TYPE_CHECKING:
    from botocore.config import Config

__all__ = ["DEFAULT_MAX_BODY_BYTES", "SimulatedKms"]

_READ_CHUNK = 64 * 1024
_STOP_JOIN_SECONDS = 5.0
_CONTENT_LENGTH = re.compile(r"[0-9]{1,12}")
DEFAULT_HANDSHAKE_TIMEOUT = 10.0

logger = logging.getLogger("nitrokit.kms_sim")


_SESSION_LOCK = threading.Lock()


@functools.cache
def _boto3_session() -> Any:
    """One boto3 session for every client we make: it caches the service model (10x faster clients)."""
    with extra_required("kms-sim"):
        import boto3

    return boto3.session.Session()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes connections and joins the threads itself
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: KmsService, *, max_connections: int,
                 socket_timeout: float, request_deadline: float, max_body_bytes: int,
                 tls_context: ssl.SSLContext | None, handshake_timeout: float) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.service = service
        self.socket_timeout = socket_timeout
        self.request_deadline = request_deadline
        self.max_body_bytes = max_body_bytes
        self.tls_context = tls_context
        self.handshake_timeout = handshake_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active_lock = threading.Lock()
        self._active: dict[threading.Thread, socket.socket] = {}  # each connection's thread and its socket
        self._closing = False
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            if self.tls_context is None:
                _refuse_overloaded(request, self.service)
            else:  # no 503 without a handshake, and the accept loop never waits for one: the log line and close
                self.service.refuse(_overloaded("connection limit; closed before the TLS handshake"))
            self.shutdown_request(request)
            return
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address),
                                  name="kms-sim-connection", daemon=True)
        with self._active_lock:
            self._active[thread] = request
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: give the slot back and drop the connection
            with self._active_lock:
                self._active.pop(thread, None)
            self._slots.release()
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls_context is not None:
                request = self._handshake(request, client_address)
                if request is None:
                    return
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active.pop(threading.current_thread(), None)
            self._slots.release()

    def _handshake(self, request: socket.socket, client_address: Any) -> ssl.SSLSocket | None:
        """The server side of the TLS handshake, within the handshake timeout; None (closed, logged) if it fails."""
        assert self.tls_context is not None
        try:
            request.settimeout(self.handshake_timeout)
            wrapped = self.tls_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        except OSError as exc:
            _log_tls_failure("handshake", client_address, exc)
            self.shutdown_request(request)
            return None
        # The wrapped socket replaces the plain one (now detached), so stop() can still shut it down.
        with self._active_lock:
            self._active[threading.current_thread()] = wrapped
            if self._closing:  # stop() looked at the connections before this one was wrapped
                _shutdown(wrapped)
        try:
            wrapped.do_handshake()
        except (OSError, ValueError) as exc:  # ssl.SSLError, a timeout, a reset; ValueError: closed meanwhile
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"not finished within {self.handshake_timeout:g} seconds")
            _log_tls_failure("handshake", client_address, exc)
            self.shutdown_request(wrapped)
            return None
        return wrapped

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets its connection (one killed between keep-alive requests) is not a server error:
        # no traceback on stderr; nor is a TLS failure after the handshake (a record altered in transit), which
        # gets a log line. Anything else is still reported by the standard library.
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError):
            _log_tls_failure("connection", client_address, error)
            return
        if isinstance(error, ConnectionError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Shut down every open connection (idle keep-alive ones included) and wait for their threads."""
        with self._active_lock:
            self._closing = True
            active = list(self._active.items())
        for _thread, sock in active:
            _shutdown(sock)
        deadline = time.monotonic() + _STOP_JOIN_SECONDS
        for thread, _sock in active:
            thread.join(max(0.0, deadline - time.monotonic()))


def _shutdown(sock: socket.socket) -> None:
    """Shut the connection down under its thread's feet: the TCP socket itself, even when TLS wraps it.

    (``SSLSocket.shutdown`` would also drop the TLS state the connection's thread is using.)
    """
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _log_tls_failure(stage: str, client_address: Any, exc: BaseException) -> None:
    peer = client_address[0] if isinstance(client_address, tuple) and client_address else "?"
    reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    logger.info("TLS %s with %s failed: %s", stage, escaped(str(peer), 64), escaped(str(reason), 120))


def _overloaded(reason: str) -> KmsServiceError:
    return KmsServiceError("ServiceUnavailableException", "Too many open connections; retry later", status=503,
                           reason=reason)


def _refuse_overloaded(request: socket.socket, service: KmsService) -> None:
    answer = service.refuse(_overloaded("connection limit"))
    head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"x-amzn-RequestId: {answer.request_id}\r\nContent-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n")
    try:
        request.settimeout(1.0)
        request.sendall(head.encode("ascii") + answer.body)
    except OSError:
        pass


class _DeadlineReader(io.RawIOBase):
    """The connection's reading side, with one deadline over many reads.

    A socket timeout bounds each read only, so a client sending a byte every few seconds would never trip it;
    here every read waits at most until :attr:`deadline`, after which reading raises ``TimeoutError`` (which the
    standard library's request handling and :meth:`_Handler._read_body` treat as a dead connection).
    """

    def __init__(self, source: Any, sock: socket.socket, timeout: float) -> None:
        super().__init__()
        self._source, self._sock, self._timeout = source, sock, timeout
        self.deadline = float("inf")
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            self.expired = True
            raise TimeoutError("the request took longer than its deadline to arrive")
        self._sock.settimeout(min(self._timeout, remaining))
        try:
            count: int = self._source.readinto(buffer)
            return count
        except TimeoutError:
            self.expired = time.monotonic() >= self.deadline
            raise
        finally:
            self._sock.settimeout(self._timeout)  # writes keep the plain socket timeout

    def close(self) -> None:
        self._source.close()
        super().close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    rbufsize = 0  # setup() wraps the unbuffered socket file in the deadline reader, then buffers that
    server: _Server
    _headers_buffer: list[bytes]  # BaseHTTPRequestHandler's own (not in its stubs)
    _pending_body = b""  # the body flush_headers writes with the head

    def version_string(self) -> str:
        return "Server"  # what KMS sends in its Server header

    def setup(self) -> None:
        # StreamRequestHandler applies self.timeout to the connection's socket.
        self.timeout = self.server.socket_timeout  # type: ignore[misc]
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and the client's delayed ACK
        # can hold the body back for 40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = _DeadlineReader(self.rfile, self.connection, self.server.socket_timeout)
        self.rfile = io.BufferedReader(self._reader, _READ_CHUNK)

    def handle_one_request(self) -> None:
        # One deadline for the whole request: from waiting for its first line to the last byte of its body.
        self._reader.deadline = time.monotonic() + self.server.request_deadline
        super().handle_one_request()
        if self._reader.expired:
            self.close_connection = True
            # Cut off before the request line was parsed: answer as HTTP/1.1, as send_error does.
            if getattr(self, "request_version", "HTTP/0.9") == "HTTP/0.9":
                self.request_version = "HTTP/1.1"
            self.requestline = getattr(self, "requestline", "")
            self._send(self.server.service.refuse(KmsServiceError(
                "RequestTimeoutException", f"The request did not arrive within {self.server.request_deadline:g} "
                "seconds", status=408, reason="request deadline")), close=True)

    def do_POST(self) -> None:
        self._serve()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST

    def _serve(self) -> None:
        service = self.server.service
        if self.headers.get("Transfer-Encoding") is not None:
            self._send(service.refuse(KmsServiceError("LengthRequiredException", "Chunked request bodies are not "
                                                      "accepted: send Content-Length", status=411)), close=True)
            return
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            length = 0
            if self.command == "POST":
                self._send(service.refuse(KmsServiceError("LengthRequiredException", "Content-Length is required",
                                                          status=411)), close=True)
                return
        elif (not _CONTENT_LENGTH.fullmatch(raw_length.strip(" \t"))
              or len(self.headers.get_all("Content-Length", [])) != 1):
            self._send(service.refuse(KmsServiceError("SerializationException", "Content-Length is not valid")),
                       close=True)
            return
        else:
            length = int(raw_length.strip(" \t"))
        if length > self.server.max_body_bytes:
            self._send(service.refuse(KmsServiceError(
                "RequestEntityTooLargeException",
                f"Request body of {length} bytes is larger than the limit of {self.server.max_body_bytes} bytes",
                status=413)), close=True)
            return
        body = self._read_body(length)
        if body is None:
            self.close_connection = True
            return
        answer = service.handle(method=self.command, path=self.path, headers=self.headers, body=body)
        self._send(answer, close=False)

    def _read_body(self, length: int) -> bytes | None:
        """Read exactly ``length`` bytes within the request's deadline; None if the client is too slow or goes
        away (the reader raises TimeoutError once the deadline has passed)."""
        chunks: list[bytes] = []
        remaining = length
        try:
            while remaining:
                chunk = self.rfile.read1(min(remaining, _READ_CHUNK))
                if not chunk:
                    return None
                chunks.append(chunk)
                remaining -= len(chunk)
        except OSError:  # includes the socket timeout
            return None
        return b"".join(chunks)

    def _send(self, answer: Answer, *, close: bool) -> None:
        try:
            self.send_response(answer.status)
            self.send_header("x-amzn-RequestId", answer.request_id)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(answer.body)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self._pending_body = answer.body
            self.end_headers()  # writes the head and the body together: see flush_headers
        except OSError:
            self.close_connection = True
        finally:
            self._pending_body = b""

    def flush_headers(self) -> None:
        # Head and body leave in one write. Written apart, stop() shutting the connection down between the two
        # would leave the client a 200 without its body, which botocore (not enforcing Content-Length) parses
        # as an empty success. Now an answer arrives whole or not at all.
        head = b"".join(self._headers_buffer) if hasattr(self, "_headers_buffer") else b""
        self._headers_buffer = []
        self.wfile.write(head + self._pending_body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors found by the standard library's request parsing, as JSON like every other answer."""
        # Parsing fails before the version is known; answer as HTTP/1.x (with headers), never as HTTP/0.9.
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"
        try:
            phrase = HTTPStatus(code).phrase.replace(" ", "")
        except ValueError:
            phrase = "BadRequest"
        answer = self.server.service.refuse(KmsServiceError(phrase, message or phrase, status=code))
        self._send(answer, close=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the service logs one line per request itself."""


class SimulatedKms:
    """A running simulated KMS on a local port; use it as a context manager.

    ``port=0`` picks a free port; :attr:`url` is the endpoint to give boto3 (``endpoint_url``). With ``tls=True``
    the endpoint is HTTPS: the certificate comes from the fixture TLS CA (:attr:`ca_file`, what clients trust),
    or from ``tls_cert`` and ``tls_key`` (PEM files, both or neither; then :attr:`ca_file` is None).
    """

    def __init__(
        self,
        config: KmsSimConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        request_deadline: float = REQUEST_DEADLINE,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        tls: bool = False,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        if config is None:
            config = KmsSimConfig()
        if not isinstance(config, KmsSimConfig):
            raise UsageError(f"config must be a KmsSimConfig, got {type(config).__name__}")
        if not 0 <= port <= 65535:
            raise UsageError("port must be in 0..65535")
        if not 1 <= max_connections <= 4096:
            raise UsageError("max_connections must be in 1..4096")
        if not 0 < socket_timeout <= 3600:
            raise UsageError("socket_timeout must be in (0, 3600] seconds")
        if not 0 < request_deadline <= 3600:
            raise UsageError("request_deadline must be in (0, 3600] seconds")
        if not 1024 <= max_body_bytes <= 16 * 1024 * 1024:
            raise UsageError("max_body_bytes must be in 1 KiB..16 MiB")
        if (tls_cert is None) != (tls_key is None):
            raise UsageError("tls_cert and tls_key go together: give both or neither")
        if tls_cert is not None and not tls:
            raise UsageError("tls_cert and tls_key are for tls=True")
        if not 0 < handshake_timeout <= 3600:
            raise UsageError("handshake_timeout must be in (0, 3600] seconds")
        self.config = config
        self._service = KmsService(config)
        self._host, self._port = host, port
        self._max_connections, self._socket_timeout = max_connections, float(socket_timeout)
        self._request_deadline = float(request_deadline)
        self._max_body_bytes = max_body_bytes
        self._tls = bool(tls)
        self._tls_files = (Path(tls_cert), Path(tls_key)) if tls_cert is not None and tls_key is not None else None
        self._handshake_timeout = float(handshake_timeout)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatedKms:
        if self._server is not None:
            raise UsageError("this SimulatedKms is already running")
        tls_context = self._tls_context() if self._tls else None
        self._server = _Server((self._host, self._port), self._service, max_connections=self._max_connections,
                               socket_timeout=self._socket_timeout, request_deadline=self._request_deadline,
                               max_body_bytes=self._max_body_bytes, tls_context=tls_context,
                               handshake_timeout=self._handshake_timeout)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="kms-sim", daemon=True)
        self._thread.start()
        return self

    def _tls_context(self) -> ssl.SSLContext:
        from nitrokit.testing import tls

        if self._tls_files is not None:
            return tls.load_server_context(*self._tls_files)
        return tls.server_context(self.tls_hosts)

    @property
    def tls_hosts(self) -> tuple[str, ...]:
        """The names the fixture CA's certificate is issued for: loopback, the region's KMS host names, and the
        host listened on (unless it is a wildcard address)."""
        region = self.config.region
        hosts = ["localhost", "127.0.0.1", "::1"]
        if REGION_PATTERN.fullmatch(region):  # the simulator takes any region name; real ones have endpoints
            hosts += [kms_endpoint_host(region), kms_endpoint_host(region, fips=True)]
        try:
            wildcard = ipaddress.ip_address(self._host).is_unspecified
        except ValueError:
            wildcard = False
        if not wildcard and self._host not in hosts:
            hosts.append(self._host)
        return tuple(hosts)

    def stop(self) -> None:
        """Stop accepting, close open connections, wait for their threads. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(_STOP_JOIN_SECONDS)
        self._server = self._thread = None

    def __enter__(self) -> SimulatedKms:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually listened on."""
        if self._server is None:
            raise UsageError("the simulated KMS is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        scheme = "https" if self._tls else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def ca_file(self) -> Path | None:
        """The fixture TLS CA certificate that clients trust with ``tls=True``; None without TLS or with a
        certificate of the caller's (whose CA only the caller knows)."""
        if not self._tls or self._tls_files is not None:
            return None
        from nitrokit.testing.tls import tls_ca_file

        return tls_ca_file()

    def client(self, *, config: Config | None = None) -> Any:
        """A boto3 KMS client for this endpoint: configured region and first access key, standard retries.

        ``config`` (a botocore ``Config``) is merged over the defaults, e.g.
        ``Config(retries={"total_max_attempts": 1})`` to see 500s without retries (botocore's
        ``max_attempts`` counts retries, not attempts). Over TLS it verifies the server against :attr:`ca_file`
        (with a certificate of the caller's: botocore's default trust).
        """
        from botocore.config import Config

        # proxies={} keeps proxy environment variables from diverting loopback traffic.
        base = Config(retries={"mode": "standard"}, proxies={})
        key = self.config.credentials[0]
        with _SESSION_LOCK:  # boto3 sessions are not thread-safe; the clients they make are
            return _boto3_session().client(
                "kms", endpoint_url=self.url, region_name=self.config.region, aws_access_key_id=key.access_key_id,
                aws_secret_access_key=key.secret_access_key, aws_session_token=key.session_token,
                config=base.merge(config) if config is not None else base,
                verify=str(ca_file) if (ca_file := self.ca_file) is not None else None,
            )

    # Runtime hooks for tests.

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault settings (rates, latency, fail_next) from now on."""
        self._service.set_faults(faults)

    def fail_next(self, count: int, *, error: str = "KMSInternalException") -> None:
        """Answer the next ``count`` authenticated calls with ``error`` (KMSInternalException or
        DependencyTimeoutException, HTTP 500)."""
        self._service.fail_next(count, error=error)

    def set_conditions(self, conditions: AttestationConditions | None, *,
                       recipient_required: bool | None = None) -> None:
        """Replace the attestation conditions (None: none), and optionally the recipient-required switch."""
        self._service.set_conditions(conditions, recipient_required=recipient_required)

    def outcomes(self) -> dict[str, int]:
        """How many requests ended in each outcome so far ("ok" or an error code)."""
        return self._service.outcomes()

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"SimulatedKms({state}, region={self.config.region!r})"

