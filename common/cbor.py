"""Strict CBOR decoding for untrusted input: one item that spans all the bytes, with no duplicate map keys,
nesting bounded and no tags but the ones the format uses.

cbor2 does the decoding in C. This module adds the checks cbor2 leaves to the caller (trailing bytes, tags),
and turns every way decoding can fail into one :class:`CborError` whose message describes the encoding
problem. The message never quotes the input. Each format (attestation documents, NSM messages, EIF
signatures) wraps the error in its own typed error.

Tags are refused unless the caller names them: none of nitrokit's formats uses cbor2's built-in ones, and
they are where the trouble is: bignums (tag 2/3) make integers of any size (whose ``str()`` raises past
4300 digits), value sharing (tag 28/29) makes a 7 KB item expand without bound when printed. :func:`shown`
describes a decoded value for a message in bounded text, and never raises.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import Any

import cbor2

from nitrokit.errors import NitrokitError
from nitrokit.text import clip, escaped

DEFAULT_MAX_DEPTH = 8
_SHOWN_INT_BITS = 64


class CborError(NitrokitError, ValueError):
    """The bytes are not exactly one well-formed CBOR item within the limits."""


class _RefusedTag(Exception):
    def __init__(self, tag: int) -> None:
        super().__init__(tag)
        self.tag = tag


class _TagDecoders(Mapping[int, Any]):
    """cbor2's ``semantic_decoders`` for one decode: every tag number maps to a decoder, so none reaches
    cbor2's built-in ones (a list of those would go stale); a named tag comes back as a CBORTag."""

    def __init__(self, tags: frozenset[int]) -> None:
        self._tags = tags

    def __getitem__(self, tag: int) -> Any:
        def decode(value: object, _immutable: bool) -> cbor2.CBORTag:
            if tag not in self._tags:
                raise _RefusedTag(tag)
            return cbor2.CBORTag(tag, value)
        return decode

    def __iter__(self) -> Iterator[int]:
        return iter(self._tags)

    def __len__(self) -> int:
        return len(self._tags)


def kind(value: object) -> str:
    """A CBOR-flavoured name for a decoded value's type ("byte string", "map", "tag 18"...), for messages."""
    names = {bytes: "byte string", str: "text", int: "integer", bool: "boolean", float: "float",
             list: "array", tuple: "array", dict: "map", type(None): "null"}
    if isinstance(value, cbor2.CBORTag):
        return f"tag {value.tag}"
    if isinstance(value, Mapping):
        return "map"
    return names.get(type(value), type(value).__name__)


def shown(value: object, limit: int = 40) -> str:
    """``value`` (decoded from untrusted CBOR) for an error message: bounded, escaped, and never raising.

    Small integers, floats, booleans and null as themselves, text escaped and clipped to ``limit``, anything
    else by its kind and size: never a repr of untrusted structure, and no ``str()`` of a huge integer.
    """
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        bits = abs(value).bit_length()
        return str(value) if bits <= _SHOWN_INT_BITS else f"an integer of {bits} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(escaped(value, limit))
    if isinstance(value, bytes):
        return f"a {len(value)}-byte byte string"
    if isinstance(value, list | tuple | Mapping):
        return f"{kind(value)} of {len(value)}"
    return kind(value)


def decode_exactly(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH, text_or_bytes_keys_only: bool = False,
                   tags: frozenset[int] = frozenset()) -> Any:
    """Decode one CBOR item that must span all of ``data``; raise :class:`CborError` otherwise.

    ``text_or_bytes_keys_only`` refuses map keys other than text or byte strings (hash-flooding defence).
    ``tags`` are the tag numbers the format uses, returned as :class:`cbor2.CBORTag`; any other tag is refused.
    """
    stream = io.BytesIO(data)
    decoder = cbor2.CBORDecoder(stream, max_depth=max_depth, allow_duplicate_keys=False,
                                strict_hashable_types=text_or_bytes_keys_only, semantic_decoders=_TagDecoders(tags))
    try:
        item = decoder.decode()
    except RecursionError:
        raise CborError(f"nested deeper than {max_depth} levels") from None
    except cbor2.CBORError as exc:
        if isinstance(exc.__cause__, _RefusedTag):
            raise CborError(f"CBOR tag {exc.__cause__.tag}, which this format does not use") from None
        raise CborError(f"invalid CBOR: {clip(str(exc) or type(exc).__name__)}") from None
    except (ValueError, TypeError, OverflowError, LookupError, MemoryError, EOFError) as exc:
        # cbor2's messages describe the encoding (truncation, duplicate key...), never our secrets.
        raise CborError(f"invalid CBOR: {clip(str(exc) or type(exc).__name__)}") from None
    if stream.tell() != len(data):
        raise CborError(f"{len(data) - stream.tell()} trailing bytes after the structure")
    return item

