"""Strict JSON for untrusted input: the one loader for wire frames, EIF metadata, the simulated KMS's request
bodies, its config files and the policy files it loads.

:func:`loads` refuses what :func:`json.loads` lets through:

- duplicate keys in an object (parsers disagree on which one wins, so two readers could see two documents);
- ``NaN``, ``Infinity`` and numbers that overflow to infinity (not JSON; they cannot be written back);
- bytes that are not UTF-8 (``json.loads(bytes)`` would also take UTF-16 and UTF-32);
- more than ``max_bytes`` bytes, and nesting deeper than ``max_depth`` (checked without recursion; nesting
  deep enough to exhaust the parser's recursion is refused the same way).

It raises :class:`StrictJsonError` whose message starts with the caller's ``what`` and never quotes the
input beyond a clipped, escaped key name; each caller turns it into its own typed error (the wire into
``MalformedFrameError``, the simulator's config into ``KmsConfigError``, and so on).
"""

from __future__ import annotations

import json
import math
from typing import Any

from nitrokit.errors import NitrokitError
from nitrokit.text import escaped

__all__ = ["DEFAULT_MAX_DEPTH", "StrictJsonError", "loads"]

#: deep enough for any document nitrokit reads (KMS requests, policies, configs nest a few levels)
DEFAULT_MAX_DEPTH = 64


class StrictJsonError(NitrokitError, ValueError):
    """The input is not strict JSON, or is over the size or depth bound. The message says which."""


def loads(data: bytes | str, *, what: str, max_bytes: int, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """The value ``data`` holds, by the strict rules above; ``what`` names the input in errors."""
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    if size > max_bytes:
        raise StrictJsonError(f"{what} is {size} bytes, over the limit of {max_bytes} bytes")
    try:
        # Decode explicitly: json.loads(bytes) would also accept UTF-16 and UTF-32.
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise StrictJsonError(f"{what} is not valid JSON: not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant,
                           parse_float=_finite_float)
    except RecursionError:
        raise StrictJsonError(f"{what} is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, integers too long to convert
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise StrictJsonError(f"{what} is not valid JSON: {escaped(message, 80)}") from None
    if _depth(value) > max_depth:
        raise StrictJsonError(f"{what} is nested deeper than {max_depth} levels")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 is valid JSON but becomes infinity, which JSON cannot carry back
        raise ValueError("a number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key '{escaped(key, 40)}' in an object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _depth(value: object) -> int:
    """Nesting depth of decoded JSON (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in item)
    return deepest
