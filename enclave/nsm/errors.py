"""Errors raised by NSM access, on the real device and the simulated one alike.

The NSM answers a request it cannot fulfil with ``{"Error": "<code>"}``; the client raises :class:`NsmError`
carrying that code as an :class:`ErrorCode`, so a caller can tell them apart::

    try:
        nsm.lock_pcr(16)
    except NsmError as exc:
        if exc.code is not ErrorCode.READ_ONLY_INDEX:   # already locked is fine here
            raise

Messages name the operation and the code, never the data sent (user data, nonces, keys).
"""

from __future__ import annotations

from enum import StrEnum

from nitrokit.errors import NitrokitError


class ErrorCode(StrEnum):
    """The NSM's error codes, spelled as they travel in CBOR (``Success`` is never sent as an error)."""

    INVALID_ARGUMENT = "InvalidArgument"
    INVALID_INDEX = "InvalidIndex"
    INVALID_RESPONSE = "InvalidResponse"
    READ_ONLY_INDEX = "ReadOnlyIndex"
    INVALID_OPERATION = "InvalidOperation"
    BUFFER_TOO_SMALL = "BufferTooSmall"
    INPUT_TOO_LARGE = "InputTooLarge"
    INTERNAL_ERROR = "InternalError"


_MEANINGS = {
    ErrorCode.INVALID_ARGUMENT: "invalid argument",
    ErrorCode.INVALID_INDEX: "PCR index out of range",
    ErrorCode.INVALID_RESPONSE: "the response does not answer the request",
    ErrorCode.READ_ONLY_INDEX: "the PCR is locked (read-only)",
    ErrorCode.INVALID_OPERATION: "operation not supported",
    ErrorCode.BUFFER_TOO_SMALL: "the response buffer is too small",
    ErrorCode.INPUT_TOO_LARGE: "input too large (at most 1024 bytes per attestation field, 4096 per request)",
    ErrorCode.INTERNAL_ERROR: "internal error",
}


class NsmError(NitrokitError):
    """Base class: an NSM operation failed. ``code`` is the NSM's error code, or None if there is none."""

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class NsmUnavailableError(NsmError):
    """There is no NSM to talk to: /dev/nsm is absent (not inside an enclave), unopenable, or closed."""


class NsmInputTooLargeError(NsmError):
    """A request or one of its fields is over the NSM's limits (code ``InputTooLarge``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.INPUT_TOO_LARGE)


class NsmResponseError(NsmError):
    """The response could not be decoded or does not answer the request (code ``InvalidResponse``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=ErrorCode.INVALID_RESPONSE)


def error_for_code(code: ErrorCode, *, operation: str) -> NsmError:
    """The exception for an ``{"Error": code}`` answer to ``operation`` (a request name, maybe with context)."""
    message = f"NSM refused {operation} with {code.value}: {_MEANINGS[code]}"
    if code is ErrorCode.INPUT_TOO_LARGE:
        return NsmInputTooLargeError(message)
    if code is ErrorCode.INVALID_RESPONSE:
        return NsmResponseError(message)
    return NsmError(message, code=code)
