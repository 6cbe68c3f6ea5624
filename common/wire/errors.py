"""Errors raised by :mod:`nitrokit.wire`: addresses, framing, the enclave-parent protocol and its clients.

Every class carries ``retryable``: whether the same call may succeed if made again later (on a new
connection). A client's retry loop can rely on it alone::

    try:
        response = client.call("GenerateRandom", request)
    except WireError as exc:
        if not exc.retryable:
            raise
        ...  # back off, then try again

The tree:

- :class:`AddressError` (also a :class:`~nitrokit.errors.UsageError`): an address string is invalid, or names
  a transport this system lacks (:class:`TransportUnavailableError`).
- :class:`ProtocolError`: bytes that break the protocol. Each subclass has the ``code`` the parent sends back
  in its error response before it closes the connection.
- :class:`TransportError`: the connection failed (refused, reset, closed early, timed out). Retryable.
- :class:`RemoteError`: the other side answered with an error ``{code, message, retryable}``.

Messages name what was wrong and never contain message bodies, random bytes, keys or credentials.
"""

from __future__ import annotations

from enum import StrEnum

from nitrokit.errors import InputTooLargeError, NitrokitError, UsageError

__all__ = [
    "AddressError",
    "ConnectionClosedError",
    "ErrorCode",
    "FrameTooLargeError",
    "IdleTimeoutError",
    "InvalidRequestError",
    "InvalidResponseError",
    "MalformedFrameError",
    "ProtocolError",
    "RemoteError",
    "TransportError",
    "TransportUnavailableError",
    "UnknownOperationError",
    "UnsupportedVersionError",
    "WireError",
    "WireTimeoutError",
]


class ErrorCode(StrEnum):
    """The error codes the parent itself sends. KMS's own codes (``...Exception``) are passed through as-is."""

    #: the frame or its JSON body is not well formed (the connection is then closed)
    MALFORMED_FRAME = "MalformedFrame"
    #: the length prefix is over the limit (the connection is then closed)
    FRAME_TOO_LARGE = "FrameTooLarge"
    #: the message's version is not spoken here (the connection is then closed)
    UNSUPPORTED_VERSION = "UnsupportedVersion"
    #: the operation is not on the allow-list (the connection is then closed)
    UNKNOWN_OPERATION = "UnknownOperation"
    #: the KMS request is invalid (a member missing, unknown, of the wrong type or out of range)
    INVALID_REQUEST = "InvalidRequest"
    #: the request has no Recipient and the parent refuses to relay plaintext
    RECIPIENT_REQUIRED = "RecipientRequired"
    #: KMS answered with Plaintext although a Recipient was sent; the answer was dropped
    PLAINTEXT_REFUSED = "PlaintextRefused"
    #: KMS's answer does not have the expected members or sizes
    INVALID_KMS_RESPONSE = "InvalidKmsResponse"
    #: a frame started but was not complete within the read timeout (the connection is then closed)
    TIMEOUT = "Timeout"
    #: too many connections or calls in flight; try again later
    BUSY = "Busy"
    #: the parent is shutting down and takes no new calls
    SHUTTING_DOWN = "ShuttingDown"
    #: the parent could not reach KMS (connection refused or reset, DNS, proxy)
    KMS_UNAVAILABLE = "KmsUnavailable"
    #: connecting to KMS or reading its answer timed out
    KMS_TIMEOUT = "KmsTimeout"
    #: the parent has no usable AWS credentials
    NO_CREDENTIALS = "NoCredentials"
    #: KMS answered with an error whose code is unusable (not a plain name, or none at all)
    KMS_ERROR = "KmsError"
    #: anything else that went wrong in the parent (details are in its log, not here)
    INTERNAL_ERROR = "InternalError"


class WireError(NitrokitError):
    """Base class of every error :mod:`nitrokit.wire` raises on purpose."""

    retryable = False


class AddressError(WireError, UsageError):
    """An address is not ``vsock://CID:PORT``, ``unix:///path`` or ``tcp://HOST:PORT`` (the message says why)."""


class TransportUnavailableError(AddressError):
    """The address is valid but this system cannot use its transport (e.g. no AF_VSOCK)."""


class ProtocolError(WireError):
    """The peer sent bytes that break the protocol. ``code`` is the error code sent back for it."""

    code: str = ErrorCode.MALFORMED_FRAME

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        #: the request id, when it could be read before the error was found (echoed in the error response)
        self.request_id = request_id


class MalformedFrameError(ProtocolError):
    """A frame or its body is not well formed (bad length, not UTF-8 JSON, missing or wrong fields)."""

    code: str = ErrorCode.MALFORMED_FRAME


class FrameTooLargeError(InputTooLargeError, ProtocolError):
    """A frame's length prefix is over the limit. Found from the 4-byte prefix, before the body is read.

    Also an :class:`~nitrokit.errors.InputTooLargeError`, for code that handles every size cap alike;
    ``except ProtocolError`` (or ``WireError``) still catches it with every other bad frame.
    """

    code: str = ErrorCode.FRAME_TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        # InputTooLargeError first in the MRO: its message goes through ProtocolError (request_id None).
        super().__init__("frame", size, limit)


class UnsupportedVersionError(ProtocolError):
    """The message carries a protocol version this side does not speak."""

    code: str = ErrorCode.UNSUPPORTED_VERSION


class UnknownOperationError(ProtocolError):
    """The request names an operation that is not on the allow-list."""

    code: str = ErrorCode.UNKNOWN_OPERATION


class InvalidRequestError(ProtocolError):
    """The KMS request inside a well-formed message is invalid (a field missing, of the wrong type or range).

    The connection stays usable: the parent answers with this code and reads the next request.
    """

    code: str = ErrorCode.INVALID_REQUEST


class InvalidResponseError(ProtocolError):
    """A KMS response is invalid (a member of the wrong type or size): from KMS, or from the parent."""

    code: str = ErrorCode.INVALID_KMS_RESPONSE


class TransportError(WireError):
    """The connection failed: refused, reset, closed before a whole frame, or too slow. Retryable."""

    retryable = True


class ConnectionClosedError(TransportError):
    """The peer closed the connection. ``clean`` is True when it closed between frames, not inside one."""

    def __init__(self, message: str, *, clean: bool = False) -> None:
        super().__init__(message)
        self.clean = clean


class WireTimeoutError(TransportError, TimeoutError):
    """A connect, read or write did not finish within its timeout."""


class IdleTimeoutError(WireTimeoutError):
    """No frame started within the idle timeout (nothing of the next frame was read)."""


class RemoteError(WireError):
    """The peer answered with an error response ``{code, message, retryable}``.

    Codes ending in ``Exception`` (``AccessDeniedException``, ``ThrottlingException``...) are KMS's own,
    passed through; the others are the parent's (see :class:`ErrorCode` and docs/protocol.md).
    """

    def __init__(self, code: str, message: str, *, retryable: bool, request_id: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.remote_message = message
        self.retryable = retryable
        self.request_id = request_id
