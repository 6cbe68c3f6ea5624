"""The ``nitrokit`` command line.

Each command group lives in its own module exposing ``register(subparsers)``; this module only wires them
together and turns errors into exit codes: 0 success, 1 a check or operation failed (with the reason),
2 a usage or I/O error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from common.cli._io import EXIT_FAILURE, EXIT_USAGE, CommandFailed
from common.errors import InputTooLargeError, NitrokitError, UsageError

# Modules that contribute sub-commands, in the order they appear in --help.
_COMMAND_MODULES = (
    "common.cli.attestation",
    "common.cli.cms",
    "common.cli.kms_sim",
    "common.cli.eif",
    "common.cli.policy",
    "enclave.cli",
    "parent.cli",
    "enclave.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nitrokit",
        description="AWS Nitro Enclaves attestation toolkit.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
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
