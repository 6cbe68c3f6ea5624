"""Strict CBOR decoding for untrusted input: one item that spans all the bytes, with no duplicate map keys and
nesting bounded.

cbor2 does the decoding in C. This module adds the checks cbor2 leaves to the caller (trailing bytes), and
turns every way decoding can fail into one :class:`CborError` whose message describes the encoding problem.
The message never quotes the input. Each format (attestation documents, NSM messages, EIF signatures) wraps
the error in its own typed error.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import cbor2

from nitrokit.errors import NitrokitError
from nitrokit.text import clip

DEFAULT_MAX_DEPTH = 8


class CborError(NitrokitError, ValueError):
    """The bytes are not exactly one well-formed CBOR item within the limits."""


def kind(value: object) -> str:
    """A CBOR-flavoured name for a decoded value's type ("byte string", "map", "tag 18"...), for messages."""
    names = {bytes: "byte string", str: "text", int: "integer", bool: "boolean", float: "float",
             list: "array", tuple: "array", dict: "map", type(None): "null"}
    if isinstance(value, cbor2.CBORTag):
        return f"tag {value.tag}"
    if isinstance(value, Mapping):
        return "map"
    return names.get(type(value), type(value).__name__)


def decode_exactly(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, text_or_bytes_keys_only: bool = False) -> Any:
    """Decode one CBOR item that must span all of ``data``; raise :class:`CborError` otherwise.

    ``text_or_bytes_keys_only`` refuses map keys other than text or byte strings (hash-flooding defence).
    """
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(stream, max_depth=max_depth, allow_duplicate_keys=False,
                                strict_hashable_types=text_or_bytes_keys_only)
    try:
        item = decoder.decode()
    except RecursionError:
        raise CborError(f"nested deeper than {max_depth} levels") from None
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, LookupError, MemoryError, EOFError) as exc:
        # cbor2's messages describe the encoding (truncation, duplicate key...), never our secrets.
        raise CborError(f"invalid CBOR: {clip(str(exc) or type(exc).__name__)}") from None
    if stream.tell() != len(data):
        raise CborError(f"{len(data) - stream.tell()} trailing bytes after the structure")
    return item

