"""The NSM's CBOR messages (docs/nsm.md, "The protocol"), shared by the device client and the simulator.

Requests and responses are serde "externally tagged" enums: a unit variant is a bare text string
(``"DescribeNSM"``), any other variant a one-entry map from its name to a map of fields
(``{"DescribePCR": {"index": 3}}``). Failures are ``{"Error": "<code>"}``.

Decoding is strict both ways: one CBOR item spanning all the bytes, bounded size and depth, no duplicate keys,
exactly the known fields with exactly the expected types. The client raises typed errors
(:mod:`nitrokit.enclave.nsm.errors`); the simulator turns the same errors into ``{"Error": ...}`` responses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import cbor2

from nitrokit.cbor import CborError, decode_exactly
from nitrokit.enclave.nsm.errors import ErrorCode, NsmError, NsmInputTooLargeError, NsmResponseError, error_for_code
from nitrokit.text import clip

# The kernel driver refuses larger requests with EMSGSIZE; responses are read into a buffer of this size.
REQUEST_MAX_BYTES = 0x1000
RESPONSE_MAX_BYTES = 0x3000
# The deepest valid message is {"DescribeNSM": {"locked_pcrs": [...]}}.
MAX_CBOR_DEPTH = 4
U16_MAX = 0xFFFF

ATTESTATION = "Attestation"
DESCRIBE_PCR = "DescribePCR"
EXTEND_PCR = "ExtendPCR"
LOCK_PCR = "LockPCR"
LOCK_PCRS = "LockPCRs"
DESCRIBE_NSM = "DescribeNSM"
GET_RANDOM = "GetRandom"
ERROR = "Error"
DIGESTS = ("SHA256", "SHA384", "SHA512")


class Message(NamedTuple):
    """A decoded request or response: the variant name and its fields (empty for a unit variant)."""

    name: str
    fields: Mapping[str, Any]


class _Field(NamedTuple):
    check: Callable[[object], bool]
    expected: str
    required: bool = True


def _u16(value: object) -> bool:
    # bool is an int subclass, but CBOR true is not an integer.
    return type(value) is int and 0 <= value <= U16_MAX


def _bytes(value: object) -> bool:
    return isinstance(value, bytes)


def _optional_bytes(value: object) -> bool:
    return value is None or isinstance(value, bytes)


def _bool(value: object) -> bool:
    return type(value) is bool


def _text(value: object) -> bool:
    return isinstance(value, str)


def _u16_array(value: object) -> bool:
    return isinstance(value, list | tuple) and all(_u16(item) for item in value)


def _digest(value: object) -> bool:
    return isinstance(value, str) and value in DIGESTS


_U16 = _Field(_u16, "an integer 0..65535")
_BYTES = _Field(_bytes, "a byte string")
_OPTIONAL_BYTES = _Field(_optional_bytes, "a byte string or null", required=False)

# Fields of each variant; None marks a unit variant (a bare string).
REQUESTS: dict[str, dict[str, _Field] | None] = {
    ATTESTATION: {"user_data": _OPTIONAL_BYTES, "nonce": _OPTIONAL_BYTES, "public_key": _OPTIONAL_BYTES},
    DESCRIBE_PCR: {"index": _U16},
    EXTEND_PCR: {"index": _U16, "data": _BYTES},
    LOCK_PCR: {"index": _U16},
    LOCK_PCRS: {"range": _U16},
    DESCRIBE_NSM: None,
    GET_RANDOM: None,
}
RESPONSES: dict[str, dict[str, _Field] | None] = {
    ATTESTATION: {"document": _BYTES},
    DESCRIBE_PCR: {"lock": _Field(_bool, "a boolean"), "data": _BYTES},
    EXTEND_PCR: {"data": _BYTES},
    LOCK_PCR: None,
    LOCK_PCRS: None,
    DESCRIBE_NSM: {
        "version_major": _U16, "version_minor": _U16, "version_patch": _U16,
        "module_id": _Field(_text, "text"), "max_pcrs": _U16,
        "locked_pcrs": _Field(_u16_array, "an array of integers 0..65535"),
        "digest": _Field(_digest, f"one of {', '.join(DIGESTS)}"),
    },
    GET_RANDOM: {"random": _BYTES},
}


class _Invalid(Exception):
    """Internal: why a message does not have the expected shape (turned into the caller's error type)."""


# --- encoding -------------------------------------------------------------------------------------------


def encode(name: str, fields: Mapping[str, Any] | None = None) -> bytes:
    """Encode a request or response variant: a bare string if ``fields`` is None, else ``{name: fields}``."""
    return cbor2.dumps(name if fields is None else {name: dict(fields)})


def encode_error(code: ErrorCode) -> bytes:
    return cbor2.dumps({ERROR: code.value})


# --- decoding: the simulator's side ---------------------------------------------------------------------


def decode_request(data: object) -> Message:
    """Decode a request; raise :class:`NsmError` with the code the NSM answers with."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise NsmError(f"request is {type(data).__name__}, not bytes", code=ErrorCode.INVALID_ARGUMENT)
    if len(data) > REQUEST_MAX_BYTES:
        raise NsmInputTooLargeError(f"request is {len(data)} bytes, over the NSM's limit of {REQUEST_MAX_BYTES}")
    try:
        item = _decode_one(bytes(data))
    except _Invalid as exc:
        raise NsmError(f"request is not valid CBOR: {exc}", code=ErrorCode.INVALID_ARGUMENT) from None
    try:
        name, body = _split_variant(item)
    except _Invalid as exc:
        raise NsmError(f"not a request: {exc}", code=ErrorCode.INVALID_OPERATION) from None
    if name not in REQUESTS:
        raise NsmError(f"unknown request {clip(name)!r}", code=ErrorCode.INVALID_OPERATION)
    try:
        return Message(name, _check_fields(name, body, REQUESTS[name]))
    except _Invalid as exc:
        raise NsmError(f"{name}: {exc}", code=ErrorCode.INVALID_ARGUMENT) from None


# --- decoding: the client's side ------------------------------------------------------------------------


def decode_response(data: bytes, *, operation: str, context: str = "") -> Mapping[str, Any]:
    """Decode the response to the request named ``operation`` and return its fields.

    ``{"Error": code}`` raises the matching :class:`NsmError`; anything malformed or answering another request
    raises :class:`NsmResponseError`. ``context`` (e.g. "PCR 17") is added to error messages.
    """
    label = f"{operation} ({context})" if context else operation
    if len(data) > RESPONSE_MAX_BYTES:
        raise NsmResponseError(f"response to {label} is {len(data)} bytes, over {RESPONSE_MAX_BYTES}")
    if not data:
        raise NsmResponseError(f"empty response to {label}")
    try:
        name, body = _split_variant(_decode_one(data))
        if name == ERROR:
            raise error_for_code(_error_code(body), operation=label)
        if name != operation:
            raise _Invalid(f"the answer is {clip(name)!r}")
        return _check_fields(name, body, RESPONSES[name])
    except _Invalid as exc:
        raise NsmResponseError(f"invalid response to {label}: {exc}") from None


def _error_code(body: object) -> ErrorCode:
    if not isinstance(body, str):
        raise _Invalid("the error code is not text")
    try:
        return ErrorCode(body)
    except ValueError:
        raise _Invalid(f"unknown error code {clip(body)!r}") from None


# --- shared ---------------------------------------------------------------------------------------------


def _decode_one(data: bytes) -> Any:
    try:
        return decode_exactly(data, max_depth=MAX_CBOR_DEPTH, text_or_bytes_keys_only=True)
    except CborError as exc:
        raise _Invalid(str(exc)) from None


def _split_variant(item: object) -> tuple[str, object]:
    """``"Name"`` -> ("Name", None); ``{"Name": body}`` -> ("Name", body)."""
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict) and len(item) == 1:
        ((name, body),) = item.items()
        if isinstance(name, str):
            return name, body
    raise _Invalid("expected a text string or a one-entry map keyed by text")


def _check_fields(name: str, body: object, schema: Mapping[str, _Field] | None) -> dict[str, Any]:
    if schema is None:
        if body is not None:
            raise _Invalid(f"{name} takes no fields: expected a bare string")
        return {}
    if not isinstance(body, dict):
        raise _Invalid(f"{name} needs a map of fields")
    unknown = [key for key in body if key not in schema]
    if unknown:
        raise _Invalid(f"unknown field {clip(repr(unknown[0]))}")
    fields: dict[str, Any] = {}
    for key, spec in schema.items():
        if key not in body:
            if spec.required:
                raise _Invalid(f"missing field {key!r}")
            fields[key] = None
            continue
        if not spec.check(body[key]):
            raise _Invalid(f"field {key!r} is not {spec.expected}")
        fields[key] = body[key]
    return fields

