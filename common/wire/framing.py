"""Length-prefixed frames over blocking sockets and asyncio streams.

A frame is a 4-byte big-endian unsigned length ``N`` (1 <= N <= the maximum, :data:`MAX_FRAME_SIZE` by
default) followed by ``N`` bytes of body. An oversized length is refused from the prefix alone, before any of
the body is read, so a peer cannot make us buffer more than the limit. Every read has a timeout: the whole
frame must arrive within ``timeout`` seconds of its first byte (and, for a blocking read, of the call).

:func:`encode_frame`, :func:`frame_length` and :func:`decode_frame` are pure; :func:`send_frame` /
:func:`recv_frame` work on blocking sockets and :func:`write_frame` / :func:`read_frame` on asyncio streams.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

from nitrokit.errors import UsageError
from nitrokit.wire.errors import (
    ConnectionClosedError,
    FrameTooLargeError,
    IdleTimeoutError,
    MalformedFrameError,
    TransportError,
    WireError,
    WireTimeoutError,
)

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME_SIZE",
    "decode_frame",
    "encode_frame",
    "frame_length",
    "read_frame",
    "recv_frame",
    "send_frame",
    "write_frame",
]

HEADER_SIZE = 4
#: The default (and largest sensible) frame size. A request's largest part is an attestation document, which
#: the KMS API allows up to 256 KiB, i.e. about 342 KiB once base64-encoded in JSON; 512 KiB holds that with
#: room to spare, while bounding what one connection can make the parent buffer.
MAX_FRAME_SIZE = 512 * 1024
_HEADER = struct.Struct(">I")


def encode_frame(body: bytes, *, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """The frame carrying ``body``: its 4-byte big-endian length, then the body."""
    if not body:
        raise UsageError("a frame body cannot be empty")
    if len(body) > max_size:
        raise FrameTooLargeError(len(body), max_size)
    return _HEADER.pack(len(body)) + body


def frame_length(header: bytes, *, max_size: int = MAX_FRAME_SIZE) -> int:
    """The body length announced by a 4-byte ``header``, checked against ``max_size`` before any body is read."""
    if len(header) != HEADER_SIZE:
        raise MalformedFrameError(f"a frame header is {HEADER_SIZE} bytes, not {len(header)}")
    (length,) = _HEADER.unpack(header)
    if length == 0:
        raise MalformedFrameError("frame length is 0: a frame body cannot be empty")
    if length > max_size:
        raise FrameTooLargeError(length, max_size)
    return int(length)


def decode_frame(data: bytes, *, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """The body of ``data``, which must hold exactly one whole frame."""
    length = frame_length(bytes(data[:HEADER_SIZE]), max_size=max_size)
    if len(data) - HEADER_SIZE != length:
        raise MalformedFrameError(f"frame announces {length} body bytes but {len(data) - HEADER_SIZE} follow")
    return bytes(data[HEADER_SIZE:])


# -- blocking sockets -------------------------------------------------------------------------------------------


def send_frame(sock: socket.socket, body: bytes, *, timeout: float, max_size: int = MAX_FRAME_SIZE) -> None:
    """Send one frame; the whole send must finish within ``timeout`` seconds."""
    frame = encode_frame(body, max_size=max_size)
    try:
        sock.settimeout(timeout)
        sock.sendall(frame)
    except TimeoutError:
        raise WireTimeoutError(f"sending a frame took longer than {timeout:g} s") from None
    except OSError as exc:
        raise TransportError(f"sending a frame failed: {exc.strerror or exc}") from None


def recv_frame(sock: socket.socket, *, timeout: float, max_size: int = MAX_FRAME_SIZE) -> bytes:
    """Receive one frame's body; the whole frame must arrive within ``timeout`` seconds of the call."""
    deadline = time.monotonic() + timeout
    header = _recv_exactly(sock, HEADER_SIZE, deadline, timeout, at_start=True)
    return _recv_exactly(sock, frame_length(header, max_size=max_size), deadline, timeout, at_start=False)


def _recv_exactly(sock: socket.socket, size: int, deadline: float, timeout: float, *, at_start: bool) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WireTimeoutError(f"no whole frame within {timeout:g} s")
        try:
            sock.settimeout(remaining)
            count = sock.recv_into(view[got:])
        except TimeoutError:
            raise WireTimeoutError(f"no whole frame within {timeout:g} s") from None
        except OSError as exc:
            raise TransportError(f"receiving a frame failed: {exc.strerror or exc}") from None
        if count == 0:
            if at_start and got == 0:
                raise ConnectionClosedError("the peer closed the connection", clean=True)
            raise ConnectionClosedError("the peer closed the connection in the middle of a frame")
        got += count
    return bytes(buffer)


# -- asyncio streams --------------------------------------------------------------------------------------------


async def write_frame(
    writer: asyncio.StreamWriter, body: bytes, *, timeout: float, max_size: int = MAX_FRAME_SIZE,
) -> None:
    """Write one frame and wait (at most ``timeout`` seconds) until the transport has taken it."""
    writer.write(encode_frame(body, max_size=max_size))
    try:
        async with asyncio.timeout(timeout):
            await writer.drain()
    except TimeoutError:
        raise WireTimeoutError(f"the peer did not take a frame within {timeout:g} s") from None
    except OSError as exc:
        raise TransportError(f"sending a frame failed: {exc.strerror or exc}") from None


async def read_frame(
    reader: asyncio.StreamReader, *, timeout: float, max_size: int = MAX_FRAME_SIZE,
    idle_timeout: float | None = None,
) -> bytes:
    """Read one frame's body.

    Without ``idle_timeout`` the whole frame must arrive within ``timeout`` seconds of the call. With it, the
    first byte may take up to ``idle_timeout`` seconds (else :class:`~nitrokit.wire.errors.IdleTimeoutError`,
    with nothing consumed) and the rest of the frame must follow within ``timeout`` seconds of that byte.
    A clean close before the first byte raises :class:`~nitrokit.wire.errors.ConnectionClosedError` with
    ``clean=True``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        try:
            async with asyncio.timeout(idle_timeout if idle_timeout is not None else timeout):
                first = await reader.readexactly(1)
        except TimeoutError:
            if idle_timeout is not None:
                raise IdleTimeoutError(f"no frame started within {idle_timeout:g} s") from None
            raise WireTimeoutError(f"no whole frame within {timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise ConnectionClosedError("the peer closed the connection", clean=True) from None
        if idle_timeout is not None:
            deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                length = frame_length(first + await reader.readexactly(HEADER_SIZE - 1), max_size=max_size)
                return await reader.readexactly(length)
        except TimeoutError:
            raise WireTimeoutError(f"no whole frame within {timeout:g} s of its first byte") from None
        except asyncio.IncompleteReadError:
            raise ConnectionClosedError("the peer closed the connection in the middle of a frame") from None
    except WireError:
        raise
    except OSError as exc:  # reset, broken pipe...
        raise TransportError(f"receiving a frame failed: {exc.strerror or exc}") from None
