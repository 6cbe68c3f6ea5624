"""Decoding hex from user input (command-line values, config files, policy values): one rule everywhere.

The rule: surrounding whitespace is ignored (a value pasted from a file or ``$(...)`` often carries a
newline); then an optional ``0x`` or ``0X`` prefix; then hex digits in either case, an even number of them,
and nothing else. Whitespace *inside* is refused, although ``bytes.fromhex`` accepts it between bytes: a
value broken in two is more likely a pasting mistake than meant. An empty value decodes to ``b""``; callers
check the length they need.

Errors name the value (``what``) and what is wrong with it, never the value itself: a nonce or user data
given in hex may be secret. Each caller passes its own error type (``error``), so a config file's bad hex is a
:class:`~nitrokit.kms.errors.KmsConfigError` and a command line's a :class:`~nitrokit.errors.UsageError`.
"""

from __future__ import annotations

from nitrokit.errors import NitrokitError, UsageError

__all__ = ["decode_hex"]

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def decode_hex(text: object, *, what: str, error: type[NitrokitError] = UsageError) -> bytes:
    """The bytes ``text`` spells in hex, by the module's rule; raises ``error`` naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise error(f"{what} must be hex text, got {type(text).__name__}")
    stripped = text.strip()
    prefix = 2 if stripped[:2] in ("0x", "0X") else 0
    digits = stripped[prefix:]
    for position, char in enumerate(digits):
        if char not in _HEX_DIGITS:
            # The position, not the character: the value may be secret, and a position is enough to find it.
            offset = len(text) - len(text.lstrip()) + prefix + position + 1
            raise error(f"{what} is not valid hex: character {offset} is not hex (0-9, a-f, A-F)")
    if len(digits) % 2:
        raise error(f"{what} has {len(digits)} hex digits, an odd number (two make a byte)")
    return bytes.fromhex(digits)
