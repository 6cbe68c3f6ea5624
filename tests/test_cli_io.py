"""common/cli/_io.py: capped reads say "more than N bytes" and exit 2; --pcr indices are ASCII digits only."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

import nitrokit.cli as cli
from nitrokit.cli._io import EXIT_USAGE, parse_pcr_args, read_input
from nitrokit.errors import InputTooLargeError, UsageError
from tests.cli_helpers import only_commands


def test_over_the_cap_says_more_than_the_limit_not_a_made_up_size(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 1000)
    with pytest.raises(InputTooLargeError) as info:
        read_input(str(path), limit=10, what="the input")
    assert str(info.value) == "the input is more than 10 bytes, over the limit"
    assert (info.value.size, info.value.limit) == (None, 10)
    assert "11" not in str(info.value)
    assert read_input(str(path), limit=1000, what="the input") == b"x" * 1000  # exactly the cap is fine


def test_over_the_cap_on_standard_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"y" * 50)))
    with pytest.raises(InputTooLargeError, match="more than 49 bytes"):
        read_input("-", limit=49, what="standard input")


def test_a_known_size_is_still_reported() -> None:
    message = str(InputTooLargeError("plaintext", 70000, 65536))
    assert message == "plaintext is 70000 bytes, over the limit of 65536 bytes"


def _register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = subparsers.add_parser("readcap")
    command.add_argument("path")
    command.set_defaults(handler=lambda args: len(read_input(args.path, limit=4, what="the file")) and 0)


def test_the_cli_exits_2_for_an_input_over_its_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    module = type(sys)("nitrokit_test_readcap")
    module.register = _register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nitrokit_test_readcap", module)
    only_commands(monkeypatch, "nitrokit_test_readcap")
    path = tmp_path / "five"
    path.write_bytes(b"12345")
    assert cli.main(["readcap", str(path)]) == EXIT_USAGE
    assert "the file is more than 4 bytes" in capsys.readouterr().err
    path.write_bytes(b"1234")
    assert cli.main(["readcap", str(path)]) == 0


@pytest.mark.parametrize("index", ["\u0663", "\u00b3", "\uff11", "\u0661\u0662", "1\u00b2", "", "-1", "x"])
def test_pcr_indices_are_ascii_digits_only(index: str) -> None:
    # U+0663 (Arabic-Indic three) and U+FF11 (fullwidth one) are str.isdigit() and int() accepts them; "³" is
    # isdigit() but int() raises ValueError: all must be the same clear usage error.
    with pytest.raises(UsageError, match="is not N=HEX"):
        parse_pcr_args([f"{index}=00"])


def test_pcr_args_still_parse() -> None:
    assert parse_pcr_args(["0=ab", " 16 =0xCD"]) == {0: b"\xab", 16: b"\xcd"}
