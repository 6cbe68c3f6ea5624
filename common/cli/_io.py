"""Input and output helpers shared by every ``nitrokit`` command.

Inputs are read with a size cap before anything parses them; binary inputs may be raw or base64 (detected);
hex arguments go through :func:`nitrokit.hextext.decode_hex`, so each command reports bad hex the same way.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from nitrokit.attestation import PCR_COUNT, PCR_LENGTHS
from nitrokit.errors import InputTooLargeError, UsageError
from nitrokit.hextext import decode_hex
from nitrokit.text import escaped

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_PUBLIC_KEY_FILE_BYTES = 16 * 1024
#: what every ``--log-level`` accepts, in any case
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class CommandFailed(Exception):
    """Raised by a command handler to stop with a message and a given exit code."""

    def __init__(self, message: str, *, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def read_input(source: str, *, limit: int, what: str) -> bytes:
    """Read ``source`` (a path, or ``-`` for standard input), refusing more than ``limit`` bytes.

    Reads at most ``limit + 1`` bytes; over the limit raises :class:`InputTooLargeError` saying "more than
    ``limit`` bytes" (the CLI exits 2 for it).
    """
    if source == "-":
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with Path(source).open("rb") as handle:
            data = handle.read(limit + 1)
    if len(data) > limit:
        raise InputTooLargeError(what, None, limit)  # only limit + 1 bytes were read: the real size is unknown
    return data


def decode_binary_or_base64(data: bytes) -> bytes:
    """Return ``data`` itself if it is binary, or its base64 decoding if it is base64 text.

    Text counts as base64 only if every byte is printable ASCII or whitespace and it decodes strictly.
    """
    stripped = b"".join(data.split())
    if not stripped or any(b < 0x20 or b > 0x7E for b in stripped):
        return data
    try:
        return base64.b64decode(stripped, validate=True)
    except binascii.Error:
        try:
            return base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
        except (binascii.Error, ValueError):
            return data


def parse_encryption_context(items: list[str], *, option: str = "--encryption-context") -> dict[str, str] | None:
    """``KEY=VALUE`` arguments as a KMS encryption context (None for none). A key is non-empty and given once:
    KMS binds a ciphertext to the exact pairs, so a typo'd or repeated key would only fail later, obscurely."""
    context: dict[str, str] = {}
    for item in items:
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise UsageError(f"{option}: expected KEY=VALUE, got '{escaped(item, 64)}'")
        if key in context:
            raise UsageError(f"{option}: the key '{escaped(key, 64)}' is given twice")
        context[key] = value
    return context or None


def parse_pcr_args(items: Sequence[str]) -> dict[int, bytes]:
    """``--pcr N=HEX`` arguments (every command's) as {index: bytes}.

    N is ASCII digits naming a PCR (0..PCR_COUNT-1), HEX a PCR value by :func:`~nitrokit.hextext.decode_hex`
    of one of the PCR lengths (32, 48 or 64 bytes); an index given twice is refused. Any bad item is a
    :class:`UsageError` naming it (the CLI exits 2), never another exception.
    """
    pcrs: dict[int, bytes] = {}
    *shorter, longest = (f"{size} bytes" for size in sorted(PCR_LENGTHS))
    sizes = f"{', '.join(shorter)} or {longest}"
    for item in items:
        index_text, sep, value = item.partition("=")
        index_text = index_text.strip()
        # isdigit() alone admits other scripts' digits ("٣", "³"), and int() reads "٣" as 3 (and "³" not at all).
        if not sep or not (index_text.isascii() and index_text.isdigit()):
            raise UsageError(f"--pcr '{escaped(item, 40)}' is not N=HEX with N in 0..{PCR_COUNT - 1}")
        # No int() of a long digit string: past 4300 digits it raises, and anything over 2 is out of range anyway.
        index = int(index_text) if len(index_text) <= 2 else PCR_COUNT
        if index >= PCR_COUNT:
            raise UsageError(f"--pcr: PCR index {escaped(index_text, 8)} is not in 0..{PCR_COUNT - 1} (N=HEX)")
        if index in pcrs:
            raise UsageError(f"--pcr {index} given twice")
        digest = decode_hex(value, what=f"--pcr {index}")
        if len(digest) not in PCR_LENGTHS:
            raise UsageError(f"--pcr {index} is {len(digest)} bytes ({2 * len(digest)} hex digits); a PCR is "
                             f"{sizes}")
        pcrs[index] = digest
    return pcrs


def read_public_key_file(path: str) -> bytes:
    """A ``--public-key`` file's bytes: a PEM public key becomes its DER SubjectPublicKeyInfo, else raw bytes."""
    data = read_input(path, limit=MAX_PUBLIC_KEY_FILE_BYTES, what="--public-key file")
    if not data.lstrip().startswith(b"-----BEGIN"):
        return data
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError("--public-key file is PEM but not a public key") from None
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def write_output(dest: str, data: bytes) -> None:
    """Write ``data`` to ``dest`` (a path, or ``-`` for standard output)."""
    if dest == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(dest).write_bytes(data)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (as logging's last-resort handler does),
    so a server thread outliving a swapped or closed stderr never logs into a closed file."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def add_log_level_argument(parser: argparse.ArgumentParser, *, default: str = "INFO", what: str = "log") -> None:
    """Every command's ``--log-level``: one of :data:`LOG_LEVELS` in any case (``info``, ``INFO``, ``Info``)."""
    parser.add_argument("--log-level", default=default.upper(), type=str.upper, choices=LOG_LEVELS,
                        metavar="LEVEL", help=f"level of the {what} on stderr: debug, info, warning or error, in any "
                                              f"case (default {default.lower()})")


def configure_logging(logger_name: str, level: str) -> None:
    """One line per record on stderr for ``logger_name`` (a server's own logger), at ``level`` (any case)."""
    upper = level.upper()
    if upper not in LOG_LEVELS:
        raise UsageError(f"log level {escaped(level, 16)!r} is not one of {', '.join(LOG_LEVELS)} (any case)")
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log = logging.getLogger(logger_name)
    log.handlers[:] = [handler]
    log.setLevel(upper)
    log.propagate = False
