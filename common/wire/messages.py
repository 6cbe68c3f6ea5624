"""Protocol messages: the JSON body of each frame, encoded and decoded without any I/O.

Version 1 (docs/protocol.md is the specification)::

    request   {"version": 1, "id": "7f3a...", "operation": "GenerateRandom", "request": {<KMS JSON request>}}
    response  {"version": 1, "id": "7f3a...", "response": {<KMS JSON response>}}
    error     {"version": 1, "id": "7f3a..." | null, "error": {"code": "...", "message": "...", "retryable": false}}

Bodies are UTF-8 JSON objects with no duplicate keys, no NaN/Infinity and no other top-level keys. Decoding
raises :class:`~nitrokit.wire.errors.MalformedFrameError`, :class:`~nitrokit.wire.errors.UnsupportedVersionError`
or :class:`~nitrokit.wire.errors.UnknownOperationError` (and only those) for any bad input, each carrying the
``request_id`` when it could be read first.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from nitrokit import strict_json
from nitrokit.errors import UsageError
from nitrokit.kms_api import RETRYABLE_KMS_CODES
from nitrokit.text import clip, escaped
from nitrokit.wire.errors import ErrorCode, MalformedFrameError, UnknownOperationError, UnsupportedVersionError
from nitrokit.wire.kms import OPERATIONS

__all__ = [
    "MAX_ERROR_MESSAGE_LENGTH",
    "PROTOCOL_VERSION",
    "ErrorInfo",
    "Request",
    "Response",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "new_request_id",
]

PROTOCOL_VERSION = 1
MAX_ERROR_MESSAGE_LENGTH = 1024
_MAX_CODE_LENGTH = 128
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_ERROR_CODE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_REQUEST_KEYS = frozenset({"version", "id", "operation", "request"})
_MAX_BODY_BYTES = 16 * 1024 * 1024  # over any frame size a server or client may be configured with


def new_request_id() -> str:
    """A fresh random request id (16 hex characters)."""
    return secrets.token_hex(8)


#: An error code that can be passed on as it is (a KMS exception name), not an HTTP status someone made up.
_KMS_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9._:-]{0,127}")
#: The most characters of KMS's own error message passed on (escaped).
MAX_KMS_MESSAGE_CHARS = 512


@dataclass(frozen=True)
class ErrorInfo:
    """The ``error`` member of a response."""

    code: str
    message: str
    retryable: bool = False

    @classmethod
    def from_kms(cls, code: object, message: object, *, status: object) -> ErrorInfo:
        """KMS's error answer (its code, message and HTTP status, all untrusted text) as passed on: a code that
        is not a plain name becomes ``KmsError``, the message is escaped and clipped, and the error is
        retryable when KMS's code says so (:data:`nitrokit.kms_api.RETRYABLE_KMS_CODES`) or the status is 5xx.
        Both the parent (from boto3) and the enclave in tunnel mode (from KMS itself) read KMS errors so."""
        code = code if isinstance(code, str) and _KMS_ERROR_CODE.fullmatch(code) else ErrorCode.KMS_ERROR
        server_error = isinstance(status, int) and not isinstance(status, bool) and status >= 500
        text = message if isinstance(message, str) and message else f"KMS answered HTTP {status}"
        return cls(code=code, message=escaped(text, MAX_KMS_MESSAGE_CHARS),
                   retryable=code in RETRYABLE_KMS_CODES or server_error)


@dataclass(frozen=True)
class Request:
    """One call: a KMS operation and its KMS JSON request. The request body is kept out of ``repr()``."""

    operation: str
    request: Mapping[str, Any] = field(repr=False)
    id: str = field(default_factory=new_request_id)
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class Response:
    """The answer to one request: exactly one of ``response`` (KMS JSON) and ``error``."""

    id: str | None
    response: Mapping[str, Any] | None = field(default=None, repr=False)
    error: ErrorInfo | None = None
    version: int = PROTOCOL_VERSION

    def __post_init__(self) -> None:
        if (self.response is None) == (self.error is None):
            raise UsageError("a Response has exactly one of response and error")


# -- encoding ---------------------------------------------------------------------------------------------------


def encode_request(request: Request, *, operations: Collection[str] = OPERATIONS) -> bytes:
    """The JSON body of ``request`` (frame it with :func:`nitrokit.wire.encode_frame`).

    ``operations`` is the allow-list: the KMS operations the parent relays by default, or another service's
    (the enclave service's ``Attest``, :mod:`nitrokit.wire.service`)."""
    if not _REQUEST_ID.fullmatch(request.id):
        raise UsageError("a request id is 1 to 64 characters from A-Z a-z 0-9 . _ : -")
    if request.operation not in operations:
        raise UsageError(f"operation {request.operation!r} is not one of {', '.join(operations)}")
    if not isinstance(request.request, Mapping):
        raise UsageError("a request's KMS JSON must be a mapping")
    return _dump({"version": request.version, "id": request.id, "operation": request.operation,
                  "request": request.request})


def encode_response(response: Response) -> bytes:
    """The JSON body of ``response``. Error messages are cut to :data:`MAX_ERROR_MESSAGE_LENGTH` characters."""
    body: dict[str, Any] = {"version": response.version, "id": response.id}
    if response.error is not None:
        error = response.error
        if not _ERROR_CODE.fullmatch(error.code):
            raise UsageError("an error code is 1 to 128 characters from A-Z a-z 0-9 . _ : -")
        message = clip(error.message, MAX_ERROR_MESSAGE_LENGTH)
        body["error"] = {"code": error.code, "message": message, "retryable": bool(error.retryable)}
    else:
        body["response"] = response.response
    return _dump(body)


def _dump(obj: Mapping[str, Any]) -> bytes:
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"message is not JSON-serialisable: {type(exc).__name__}") from None


# -- decoding ---------------------------------------------------------------------------------------------------


def decode_request(body: bytes, *, operations: Collection[str] = OPERATIONS) -> Request:
    """Parse and check a request body; raises only the :class:`~nitrokit.wire.errors.ProtocolError` subclasses
    named in the module docstring. The request itself is checked later, by its :class:`Operation`;
    ``operations`` is the allow-list, as for :func:`encode_request`."""
    obj = _load(body)
    request_id = _peek_id(obj)
    _check_version(obj, request_id)
    if obj.keys() != _REQUEST_KEYS:
        raise MalformedFrameError(f"a request has exactly the keys {_keys(_REQUEST_KEYS)}, not {_keys(obj)}",
                                  request_id=request_id)
    if request_id is None:
        raise MalformedFrameError("request id must be 1 to 64 characters from A-Z a-z 0-9 . _ : -")
    operation = obj["operation"]
    if not isinstance(operation, str):
        raise MalformedFrameError("operation must be a string", request_id=request_id)
    if operation not in operations:
        raise UnknownOperationError(f"operation {escaped(operation, 64)!r} is not one of {', '.join(operations)}",
                                    request_id=request_id)
    if not isinstance(obj["request"], dict):
        raise MalformedFrameError("request must be a JSON object", request_id=request_id)
    return Request(operation=operation, request=obj["request"], id=request_id)


def decode_response(body: bytes) -> Response:
    """Parse and check a response body (the client side)."""
    obj = _load(body)
    request_id = _peek_id(obj)
    _check_version(obj, request_id)
    if obj.get("id") is not None and request_id is None:
        raise MalformedFrameError("response id must be null or 1 to 64 characters from A-Z a-z 0-9 . _ : -")
    keys = obj.keys()
    if keys == {"version", "id", "response"}:
        if not isinstance(obj["response"], dict):
            raise MalformedFrameError("response must be a JSON object", request_id=request_id)
        return Response(id=request_id, response=obj["response"])
    if keys != {"version", "id", "error"}:
        raise MalformedFrameError(f"a response has the keys version, id and one of response/error, not {_keys(obj)}",
                                  request_id=request_id)
    error = obj["error"]
    if not isinstance(error, dict) or error.keys() != {"code", "message", "retryable"}:
        raise MalformedFrameError("error must be an object with exactly code, message and retryable",
                                  request_id=request_id)
    code, message, retryable = error["code"], error["message"], error["retryable"]
    if not isinstance(code, str) or not _ERROR_CODE.fullmatch(code):
        raise MalformedFrameError("error code must be 1 to 128 characters from A-Z a-z 0-9 . _ : -",
                                  request_id=request_id)
    if not isinstance(message, str) or len(message) > 4 * MAX_ERROR_MESSAGE_LENGTH:
        raise MalformedFrameError("error message must be a string of reasonable length", request_id=request_id)
    if not isinstance(retryable, bool):
        raise MalformedFrameError("error retryable must be true or false", request_id=request_id)
    return Response(id=request_id, error=ErrorInfo(code=code, message=escaped(message), retryable=retryable))


def _load(body: bytes) -> dict[str, Any]:
    try:
        # The framing layer has bounded the body already; the bound here keeps the loader's contract explicit.
        obj = strict_json.loads(body, what="frame body", max_bytes=_MAX_BODY_BYTES)
    except strict_json.StrictJsonError as exc:
        raise MalformedFrameError(str(exc)) from None
    if not isinstance(obj, dict):
        raise MalformedFrameError("frame body must be a JSON object")
    return obj


def _peek_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("id")
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else None


def _check_version(obj: dict[str, Any], request_id: str | None) -> None:
    version = obj.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise MalformedFrameError("version must be an integer", request_id=request_id)
    if version != PROTOCOL_VERSION:
        shown = version if -(10**6) < version < 10**6 else "out of range"
        raise UnsupportedVersionError(f"protocol version {shown} is not supported (this side speaks "
                                      f"{PROTOCOL_VERSION})", request_id=request_id)


def _keys(keys: Any) -> str:
    names = sorted(str(key) for key in keys)
    return escaped(", ".join(names) or "none", 200)


