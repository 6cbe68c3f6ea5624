"""A small, bounded HTTP/1.1 client over TLS, for tunnel mode: one POST at a time on one kept-alive connection.

The raw connection comes from :func:`nitrokit.wire.address.connect` (vsock to the parent's byte relay in an
enclave; Unix or TCP in tests) and TLS runs on it with the caller's :class:`ssl.SSLContext`, so the relay
sees only TLS records. Every size and wait is bounded:

- one deadline over the whole exchange (connect, handshake, request, answer): the socket's timeout is set to
  the time left before every read and write;
- the status line and headers: at most :data:`MAX_HEAD_BYTES` bytes and :data:`MAX_HEADERS` lines;
- the body: ``Content-Length`` is required (chunked answers are refused) and at most ``max_body`` bytes,
  refused from the header before any of it is read.

An idle connection is checked before it is reused: a TLS socket with something to read while no answer is
due has been closed by the peer (or is out of step), so a new one is opened, resuming the TLS session.

Failures are :mod:`nitrokit.wire.errors` classes, so the KMS client's retry loop treats both modes alike:
:class:`~nitrokit.wire.errors.WireTimeoutError` and :class:`~nitrokit.wire.errors.ConnectionClosedError`
(retryable), :class:`~nitrokit.wire.errors.InvalidResponseError` for an answer that breaks HTTP or the
bounds, and :class:`TlsFailure` (not retryable) for anything TLS refuses: a certificate or host name that
does not verify, or records altered, injected or out of order in transit.
"""

from __future__ import annotations

import contextlib
import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from nitrokit.enclave.errors import TlsFailure
from nitrokit.text import escaped
from nitrokit.wire.address import Address, closed_while_idle, connect
from nitrokit.wire.errors import (
    ConnectionClosedError,
    InvalidResponseError,
    TransportError,
    WireError,
    WireTimeoutError,
)

__all__ = ["MAX_HEADERS", "MAX_HEAD_BYTES", "HttpAnswer", "HttpsConnection", "TlsFailure"]

#: the status line and headers of an answer, together
MAX_HEAD_BYTES = 16 * 1024
#: header lines in an answer
MAX_HEADERS = 64
_READ_CHUNK = 16 * 1024
_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([1-5][0-9][0-9])(?: [\x20-\x7e\t]*)?")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 header field name
_DIGITS = re.compile(r"[0-9]{1,12}")
# What OpenSSL says when the first bytes back are not a TLS record (an HTTP answer, the parent's own protocol).
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
                      "PACKET_LENGTH_TOO_LONG"})
_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP answer: status, headers (names lower-case; a repeated header's values joined with ", "), body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _Deadline:
    __slots__ = ("at", "timeout")

    def __init__(self, timeout: float, at: float | None = None) -> None:
        self.timeout = timeout
        self.at = time.monotonic() + timeout if at is None else at

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise WireTimeoutError(f"the KMS exchange took longer than {self.timeout:g} s")
        return left


class HttpsConnection:
    """POSTs to ``host`` over TLS on connections to ``address``; one at a time, the connection kept alive."""

    def __init__(self, address: Address, *, host: str, context: ssl.SSLContext, connect_timeout: float,
                 timeout: float, max_body: int, roots: str = "the CA file given") -> None:
        """``roots`` says in words what ``context`` trusts, for the message when a certificate is refused."""
        self.address = address
        self.host = host
        self._context = context
        self._roots = roots
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._max_body = max_body
        self._sock: ssl.SSLSocket | None = None
        self._session: ssl.SSLSession | None = None
        self._buffer = bytearray()
        #: connections opened so far, and how many of them resumed a TLS session (for tests and traces)
        self.connections = 0
        self.resumed = 0

    def post(self, headers: Mapping[str, str], body: bytes, *, until: float | None = None) -> HttpAnswer:
        """Send ``POST /`` with ``headers`` (``Content-Length`` is added) and ``body``; return the answer.
        ``until`` (:func:`time.monotonic`) is the caller's deadline, when the exchange is part of a longer call."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = f"POST / HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        deadline = _Deadline(self._timeout, until)
        try:
            sock = self._connection(deadline)
            sock.settimeout(deadline.left())
            sock.sendall(request)
            answer, keep = self._read_answer(sock, deadline)
        except BaseException as exc:
            self.close()
            raise _mapped(exc, self.host) from None
        self._session = sock.session  # TLS 1.3 tickets arrive after the handshake: kept once an answer came
        if not keep:
            self.close()
        return answer

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- the connection --------------------------------------------------------------------------------------

    def _connection(self, deadline: _Deadline) -> ssl.SSLSocket:
        if self._sock is not None and closed_while_idle(self._sock):
            self.close()
        if self._sock is None:
            raw = connect(self.address, timeout=min(self._connect_timeout, deadline.left()))
            try:
                sock = self._context.wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False,
                                                 session=self._session)
                sock.settimeout(deadline.left())
                sock.do_handshake()
            except BaseException as exc:
                raw.close()
                raise self._handshake_failure(exc) from None
            self.connections += 1
            self.resumed += bool(sock.session_reused)
            self._sock = sock
        return self._sock

    def _handshake_failure(self, exc: BaseException) -> BaseException:
        """What a failed handshake means, in the words of the likely mistake (others as :func:`_mapped`)."""
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = escaped(str(exc.verify_message or exc.reason or "not verified"), 200)
            hint = ("; the name checked is kms_host / --kms-host, by default KMS's endpoint in region / --region"
                    if exc.verify_code == _HOSTNAME_MISMATCH else "")
            return TlsFailure(f"the TLS certificate of {escaped(self.host, 255)} is not accepted: {reason} "
                              f"(checked against {self._roots}{hint})")
        if isinstance(exc, ssl.SSLError) and exc.reason in _NOT_TLS:
            return TlsFailure(f"the peer at {self.address} did not answer TLS: is it nitrokit parent --mode "
                              "tunnel, and is --parent its tunnel address (not the credentials channel)?")
        if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError | ConnectionError):
            return ConnectionClosedError("the parent closed the tunnel before KMS answered: can the parent "
                                         "reach its target? (see its log)")
        return exc

    # -- the answer ------------------------------------------------------------------------------------------

    def _read_answer(self, sock: ssl.SSLSocket, deadline: _Deadline) -> tuple[HttpAnswer, bool]:
        head = self._read_head(sock, deadline)
        lines = head.decode("latin-1").split("\r\n")
        status_line = _STATUS_LINE.fullmatch(lines[0])
        if status_line is None:
            raise InvalidResponseError(f"KMS's answer does not start with an HTTP/1.x status line: "
                                       f"{escaped(lines[0], 60)}")
        status = int(status_line.group(2))
        if status < 200:
            raise InvalidResponseError(f"KMS answered HTTP {status} (no interim answers are expected)")
        headers = _parse_headers(lines[1:])
        if "transfer-encoding" in headers:
            raise InvalidResponseError("KMS's answer uses Transfer-Encoding (chunked): only Content-Length "
                                       "answers are read")
        declared = headers.get("content-length")
        if declared is None or not _DIGITS.fullmatch(declared):
            raise InvalidResponseError("KMS's answer has no valid Content-Length")
        length = int(declared)
        if length > self._max_body:
            raise InvalidResponseError(f"KMS's answer is {length} bytes, over the limit of {self._max_body}; "
                                       "refused unread")
        body = self._read_exactly(sock, deadline, length)
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection and (status_line.group(1) == "1" or "keep-alive" in connection)
        return HttpAnswer(status=status, headers=headers, body=body), keep and not self._buffer

    def _read_head(self, sock: ssl.SSLSocket, deadline: _Deadline) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                if end > MAX_HEAD_BYTES:
                    break
                head = bytes(self._buffer[:end])
                del self._buffer[:end + 4]
                return head
            if len(self._buffer) > MAX_HEAD_BYTES:
                break
            self._fill(sock, deadline, "the answer's headers")
        raise InvalidResponseError(f"KMS's answer headers are over {MAX_HEAD_BYTES} bytes")

    def _read_exactly(self, sock: ssl.SSLSocket, deadline: _Deadline, length: int) -> bytes:
        while len(self._buffer) < length:
            self._fill(sock, deadline, f"the answer's body ({length} bytes)")
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    def _fill(self, sock: ssl.SSLSocket, deadline: _Deadline, what: str) -> None:
        sock.settimeout(deadline.left())
        chunk = sock.recv(_READ_CHUNK)
        if not chunk:
            raise ConnectionClosedError(f"the connection closed before the end of {what}",
                                        clean=not self._buffer)
        self._buffer += chunk

    def __repr__(self) -> str:
        return f"HttpsConnection({str(self.address)!r}, host={self.host!r})"


def _parse_headers(lines: list[str]) -> dict[str, str]:
    if len(lines) > MAX_HEADERS:
        raise InvalidResponseError(f"KMS's answer has more than {MAX_HEADERS} header lines")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):  # also refuses obsolete line folding (a leading space)
            raise InvalidResponseError(f"KMS's answer has a malformed header line: {escaped(line, 60)}")
        key, value = name.lower(), value.strip(" \t")
        if key == "content-length" and key in headers and headers[key] != value:
            raise InvalidResponseError("KMS's answer has two different Content-Length headers")
        headers[key] = value if key not in headers or key == "content-length" else f"{headers[key]}, {value}"
    return headers


def _mapped(exc: BaseException, host: str) -> BaseException:
    """The wire error for a failure of the exchange (others are returned as they are)."""
    if isinstance(exc, WireError):
        return exc
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError):
        return ConnectionClosedError("the TLS connection closed before the answer was complete")
    if isinstance(exc, ssl.SSLError):
        # Bad record MAC, decryption failed, unexpected message, a handshake alert...: bytes were altered or
        # injected between here and the server, or the server is not one we accept.
        reason = exc.reason or type(exc).__name__
        return TlsFailure(f"TLS with {escaped(host, 255)} failed: {escaped(str(reason), 200)}")
    if isinstance(exc, TimeoutError):
        return WireTimeoutError("the KMS exchange passed its deadline")
    if isinstance(exc, ConnectionError):
        return ConnectionClosedError(f"the connection failed: {escaped(exc.strerror or type(exc).__name__, 80)}")
    if isinstance(exc, OSError):
        return TransportError(f"the connection failed: {escaped(exc.strerror or type(exc).__name__, 80)}")
    return exc
