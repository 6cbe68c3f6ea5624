"""The ``nitrokit`` command line.

Each command group lives in a module exposing ``register(subparsers)``. The core's own groups are listed here;
the enclave and parent sides (and any other installed package) add theirs through the ``nitrokit.commands``
entry-point group, so the core names no side. This module wires them together and turns errors into exit
codes: 0 success, 1 a check or operation failed (with the reason), 2 a usage or I/O error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, TypeAlias

from nitrokit import __version__
from nitrokit.cli._io import EXIT_FAILURE, EXIT_USAGE, CommandFailed
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nitrokit", description="AWS Nitro Enclaves attestation toolkit.")
    parser.add_argument("--version", action="version", version=f"nitrokit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _CORE_COMMANDS:
        importlib.import_module(module).register(subparsers)
    for _name, register in _registered_commands():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CommandFailed as exc:
        _print_error(str(exc))
        return exc.exit_code
    except UsageError as exc:
        _print_error(f"usage: {exc}")
        return EXIT_USAGE
    except InputTooLargeError as exc:  # an input over its cap: the caller's to fix, like a usage error
        _print_error(str(exc))
        return EXIT_USAGE
    except NitrokitError as exc:
        _print_error(str(exc))
        return EXIT_FAILURE
    except OSError as exc:
        _print_error(f"I/O error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code


def _print_error(message: str) -> None:
    print(f"nitrokit: {message}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
