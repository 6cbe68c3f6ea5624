"""Clients of the protocol: send one request frame, read one response frame.

::

    with WireClient("vsock://3:8000", connect_timeout=5, timeout=30) as client:
        answer = client.call("GenerateRandom", generate_random_request(32, attestation_document=doc))
    result = parse_generate_random_response(answer)        # .ciphertext_for_recipient

    async with AsyncWireClient("unix:///run/nitrokit.sock") as client:
        answer = await client.call("GenerateRandom", {...})

``call`` returns the KMS JSON response, or raises :class:`~nitrokit.wire.errors.RemoteError` (the parent or KMS
answered with an error; ``.code``, ``.retryable``), :class:`~nitrokit.wire.errors.TransportError` (connect
failed, connection lost, timeout; retryable) or :class:`~nitrokit.wire.errors.ProtocolError` (the answer broke
the protocol). A client keeps its connection between calls and opens a new one when the old one was closed
by the peer or failed; it never resends a request by itself, so retries are the caller's decision.
One client makes one call at a time; use one client per concurrent caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Collection, Mapping
from types import TracebackType
from typing import Any, Self

from nitrokit.wire.address import Address, closed_while_idle, connect, open_connection, parse_address
from nitrokit.wire.errors import FrameTooLargeError, MalformedFrameError, RemoteError
from nitrokit.wire.framing import MAX_FRAME_SIZE, read_frame, recv_frame, send_frame, write_frame
from nitrokit.wire.kms import OPERATIONS
from nitrokit.wire.messages import Request, Response, decode_response, encode_request

__all__ = ["AsyncWireClient", "WireClient", "call"]

DEFAULT_CONNECT_TIMEOUT = 5.0
#: How long a call waits for its answer: the parent's KMS call, with boto3's own retries, fits in it.
DEFAULT_TIMEOUT = 30.0


class _ClientBase:
    """What both clients share: the options, and encoding a request as a frame body within the limits.

    ``operations`` are the operation names the client may send (default: the KMS operations the parent
    relays); pass another service's names, e.g. the enclave service's ``Attest``, to call that service.
    """

    def __init__(
        self, address: str | Address, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT, max_frame_size: int = MAX_FRAME_SIZE,
        operations: Collection[str] = OPERATIONS,
    ) -> None:
        self.address = parse_address(address)
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_frame_size = max_frame_size
        self.operations = operations

    def _encode(self, request: Request) -> bytes:
        body = encode_request(request, operations=self.operations)
        _check_size(body, self.max_frame_size)  # before connecting
        return body


class WireClient(_ClientBase):
    """A blocking client over one (reused) connection."""

    def __init__(
        self, address: str | Address, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT, max_frame_size: int = MAX_FRAME_SIZE,
        operations: Collection[str] = OPERATIONS,
    ) -> None:
        super().__init__(address, connect_timeout=connect_timeout, timeout=timeout, max_frame_size=max_frame_size,
                         operations=operations)
        self._sock: socket.socket | None = None

    def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``request`` (KMS JSON) for ``operation``; return the KMS JSON response or raise ``RemoteError``."""
        return _unwrap(self.exchange(Request(operation=operation, request=request)))

    def exchange(self, request: Request) -> Response:
        """Send one request frame and read one response frame; an error response is returned, not raised."""
        body = self._encode(request)
        sock = self._connection()
        try:
            send_frame(sock, body, timeout=self.timeout, max_size=self.max_frame_size)
            response = decode_response(recv_frame(sock, timeout=self.timeout, max_size=self.max_frame_size))
            _check_id(request, response)
        except BaseException:
            self.close()
            raise
        if response.error is not None:
            self.close()  # the parent closes after protocol errors; a fresh connection is cheap
        return response

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def _connection(self) -> socket.socket:
        if self._sock is not None and closed_while_idle(self._sock):
            self.close()
        if self._sock is None:
            self._sock = connect(self.address, timeout=self.connect_timeout)
        return self._sock

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WireClient({str(self.address)!r})"


class AsyncWireClient(_ClientBase):
    """The asyncio form of :class:`WireClient` (same options). Calls on one client are serialised."""

    def __init__(
        self, address: str | Address, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        timeout: float = DEFAULT_TIMEOUT, max_frame_size: int = MAX_FRAME_SIZE,
        operations: Collection[str] = OPERATIONS,
    ) -> None:
        super().__init__(address, connect_timeout=connect_timeout, timeout=timeout, max_frame_size=max_frame_size,
                         operations=operations)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def call(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``request`` (KMS JSON) for ``operation``; return the KMS JSON response or raise ``RemoteError``."""
        return _unwrap(await self.exchange(Request(operation=operation, request=request)))

    async def exchange(self, request: Request) -> Response:
        """Send one request frame and read one response frame; an error response is returned, not raised."""
        body = self._encode(request)
        async with self._lock:
            reader, writer = await self._connection()
            try:
                await write_frame(writer, body, timeout=self.timeout, max_size=self.max_frame_size)
                response = decode_response(await read_frame(reader, timeout=self.timeout, max_size=self.max_frame_size))
                _check_id(request, response)
            except BaseException:
                await self.aclose()
                raise
            if response.error is not None:
                await self.aclose()
            return response

    async def aclose(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is not None and (self._streams[0].at_eof() or self._streams[1].is_closing()):
            await self.aclose()
        if self._streams is None:
            self._streams = await open_connection(self.address, timeout=self.connect_timeout,
                                                  limit=self.max_frame_size + 4)
        return self._streams

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncWireClient({str(self.address)!r})"


def call(
    address: str | Address, operation: str, request: Mapping[str, Any], *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, timeout: float = DEFAULT_TIMEOUT,
    operations: Collection[str] = OPERATIONS,
) -> dict[str, Any]:
    """One call on a fresh connection, closed afterwards (see :meth:`WireClient.call`)."""
    with WireClient(address, connect_timeout=connect_timeout, timeout=timeout, operations=operations) as client:
        return client.call(operation, request)


def _check_size(body: bytes, limit: int) -> None:
    if len(body) > limit:
        raise FrameTooLargeError(len(body), limit)


def _check_id(request: Request, response: Response) -> None:
    # A protocol error found before the id could be read comes back with id null.
    if response.id is not None and response.id != request.id:
        raise MalformedFrameError(f"the response is for request {response.id!r}, not {request.id!r}")
    if response.id is None and response.error is None:
        raise MalformedFrameError("a successful response must carry the request id")


def _unwrap(response: Response) -> dict[str, Any]:
    if response.error is not None:
        error = response.error
        raise RemoteError(error.code, error.message, retryable=error.retryable, request_id=response.id)
    assert response.response is not None
    return dict(response.response)

