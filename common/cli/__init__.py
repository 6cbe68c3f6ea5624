"""The ``nitrokit`` command line.

Each command group lives in a module exposing ``register(subparsers)``. The core's own groups are listed here;
the enclave and parent sides (and any other installed package) add theirs through the ``nitrokit.commands``
entry-point group, so the core names no side. This module wires them together and turns errors into exit
codes: 0 success, 1 a check or operation failed (with the reason), 2 a usage or I/O error.

Two promises hold for every command, so no command has to keep them itself:

- with ``--json`` standard output carries exactly one JSON object, also when the command cannot run: an
  error is ``{"error": {"kind": "usage" | "io" | "failed" | "interrupted", "message": "..."}, "exit_code": N}``
  (the message is also on stderr, as without ``--json``);
- a reader that closes standard output early (``nitrokit verify DOC --json | head -1``) does not turn the
  verdict into an I/O error: the rest of the output is dropped silently and the exit status is the command's.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeAlias, cast

from nitrokit import __version__
from nitrokit.cli._io import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CommandFailed
from nitrokit.errors import InputTooLargeError, NitrokitError, UsageError

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]  # argparse has no public name
    Register: TypeAlias = Callable[[Subparsers], None]

COMMAND_GROUP = "nitrokit.commands"

# The core's own command groups, in the order they appear in --help; registered groups follow, by name.
_CORE_COMMANDS = (
    "nitrokit.cli.attestation",
    "nitrokit.cli.cms",
    "nitrokit.cli.kms_sim",
    "nitrokit.cli.eif",
    "nitrokit.cli.policy_statements",
)


def _registered_commands() -> Iterator[tuple[str, Register]]:
    """The ``nitrokit.commands`` entry points, by name; one that fails to load becomes a command saying why."""
    seen: set[str] = set()
    for entry in sorted(metadata.entry_points(group=COMMAND_GROUP), key=lambda entry: entry.name):
        if entry.name in seen:  # the same distribution seen twice on sys.path
            continue
        seen.add(entry.name)
        try:
            register = entry.load()
        except Exception as exc:  # a broken or partial install must not take the other commands down
            yield entry.name, _unavailable(entry.name, f"{type(exc).__name__}: {exc}")
        else:
            yield entry.name, register


def _unavailable(name: str, reason: str) -> Register:
    def register(subparsers: Subparsers) -> None:
        parser = subparsers.add_parser(name, help=f"(unavailable: {reason})", add_help=False)
        parser.add_argument("rest", nargs=argparse.REMAINDER)

        def fail(_args: argparse.Namespace) -> int:
            raise CommandFailed(f"the {name!r} command could not be loaded ({reason}); reinstall nitrokit",
                                exit_code=EXIT_USAGE)

        parser.set_defaults(handler=fail)

    return register


class ArgumentsError(SystemExit):
    """argparse's usage error (exit 2), with its message kept for ``--json``. A SystemExit, as argparse's is."""

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_USAGE)
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse's parser (and, through ``parser_class``, every subcommand's), keeping usage errors' messages."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise ArgumentsError(message)


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = _Parser(prog="nitrokit", description="AWS Nitro Enclaves attestation toolkit.")
    parser.add_argument("--version", action="version", version=f"nitrokit {__version__}")
    # Subcommands' parsers are _Parser too (argparse uses the parent's class), so their usage errors reach --json.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _CORE_COMMANDS:
        importlib.import_module(module).register(subparsers)
    for _name, register in _registered_commands():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    # A closed file descriptor 1 (``>&-``) leaves sys.stdout None: output then goes nowhere, like a closed pipe.
    stdout = sys.stdout if sys.stdout is not None else open(os.devnull, "w")  # noqa: SIM115
    sys.stdout = cast(IO[str], _ClosablePipe(stdout))
    try:
        code = _run(words)
    except BaseException:  # argparse's SystemExit, KeyboardInterrupt: flush, then let it go
        sys.stdout = stdout
        _flush_quietly(stdout)
        raise
    sys.stdout = stdout
    # Flush now, not at interpreter exit (where a failure prints a traceback). A reader that went away keeps
    # the verdict; output that could not be written (a full disk) is an I/O error, exit 2.
    try:
        stdout.flush()
    except BrokenPipeError:
        _silence(stdout)
    except OSError as exc:
        _print_error(f"I/O error: {exc.strerror or exc}: standard output")
        _silence(stdout)
        return EXIT_USAGE
    except ValueError:  # already closed
        pass
    return code


def _run(words: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(words)
    except ArgumentsError as exc:
        if _wants_json(words):
            _print_json_error("usage", exc.message, EXIT_USAGE)
        raise
    as_json = bool(getattr(args, "json", False))
    try:
        code: int = args.handler(args)
    except CommandFailed as exc:
        return _fail(str(exc), exc.exit_code, "usage" if exc.exit_code == EXIT_USAGE else "failed", as_json)
    except UsageError as exc:
        return _fail(f"usage: {exc}", EXIT_USAGE, "usage", as_json)
    except InputTooLargeError as exc:  # an input over its cap: the caller's to fix, like a usage error
        return _fail(str(exc), EXIT_USAGE, "usage", as_json)
    except NitrokitError as exc:
        return _fail(str(exc), EXIT_FAILURE, "failed", as_json)
    except OSError as exc:
        message = f"I/O error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        return _fail(message, EXIT_USAGE, "io", as_json)
    except KeyboardInterrupt:
        if as_json:
            _print_json_error("interrupted", "interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    return code


def _fail(message: str, code: int, kind: str, as_json: bool) -> int:
    _print_error(message)
    if as_json:
        _print_json_error(kind, message, code)
    return code


def _print_error(message: str) -> None:
    print(f"nitrokit: {message}", file=sys.stderr)


def _print_json_error(kind: str, message: str, code: int) -> None:
    """The one JSON object of a ``--json`` command that could not give its own (the module docstring's shape)."""
    # Standard output may be what failed (a full disk): the message is on stderr already.
    with contextlib.suppress(OSError):
        print(json.dumps({"error": {"kind": kind, "message": message}, "exit_code": code}, indent=2))


def _wants_json(words: Sequence[str]) -> bool:
    """Whether ``--json`` (or an abbreviation argparse would take for it) is among the options."""
    for word in words:
        if word == "--":
            return False
        if len(word) >= 3 and "--json".startswith(word):
            return True
    return False


class _ClosablePipe:
    """Standard output while a command runs. When the reader goes away (EPIPE), output is pointed at the null
    device with ``os.dup2`` and the command carries on to its verdict, as ``cat`` or ``grep`` reading into
    ``head`` do; before, the first write after ``head`` exited raised BrokenPipeError out of the command."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            _silence(self._stream)
            return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        _flush_quietly(self._stream)

    @property
    def buffer(self) -> Any:
        return _ClosableBinaryPipe(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ClosableBinaryPipe:
    """``sys.stdout.buffer`` of a :class:`_ClosablePipe` (for commands writing bytes)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._buffer: Any = stream.buffer  # type: ignore[attr-defined]

    def write(self, data: bytes) -> int:
        try:
            count: int = self._buffer.write(data)
            return count
        except BrokenPipeError:
            _silence(self._stream)
            return len(data)

    def flush(self) -> None:
        try:
            self._buffer.flush()
        except BrokenPipeError:
            _silence(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._buffer, name)


def _flush_quietly(stream: IO[str]) -> None:
    try:
        stream.flush()
    except OSError:  # a reader gone, a full disk: what is left cannot be written, and must not be tried again
        _silence(stream)
    except ValueError:  # already closed
        pass


def _silence(stream: IO[str]) -> None:
    """Point the stream's file descriptor at the null device and drop what it still holds."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()  # the buffered rest now goes to the null device


if __name__ == "__main__":
    raise SystemExit(main())
