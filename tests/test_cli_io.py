"""common/cli/_io.py: capped reads say "more than N bytes" and exit 2; --pcr N=HEX is one parser for every
command: ASCII-digit indices in range, PCR-length values, a clear usage error for anything else."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import pytest

import nitrokit.cli as cli
from nitrokit.cli._io import EXIT_USAGE, parse_encryption_context, parse_pcr_args, read_input
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
    assert parse_pcr_args(["0=" + "ab" * 48, " 16 =0xCD" + "cd" * 47, "31=" + "00" * 32, "7=" + "ee" * 64]) == {
        0: b"\xab" * 48, 16: b"\xcd" * 48, 31: bytes(32), 7: b"\xee" * 64}


@pytest.mark.parametrize(("item", "fragment"), [
    ("32=" + "00" * 48, "PCR index 32 is not in 0..31"),
    ("999=" + "00" * 48, "PCR index 999 is not in 0..31"),
    ("9" * 5000 + "=00", "PCR index 99999..."),  # int() of over 4300 digits raises ValueError: never called
    ("0=", "0 bytes"),
    ("0=" + "ab" * 20, "20 bytes (40 hex digits); a PCR is 32 bytes, 48 bytes or 64 bytes"),
    ("0=abc", "3 hex digits"),
    ("0=zz", "--pcr 0 is not valid hex"),
    ("0=ab cd", "not valid hex"),
])
def test_pcr_indices_are_range_checked_and_values_length_checked(item: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_pcr_args([item])
    assert fragment in str(info.value) and len(str(info.value)) < 200


def test_a_pcr_given_twice_is_refused() -> None:
    with pytest.raises(UsageError, match="--pcr 3 given twice"):
        parse_pcr_args(["3=" + "00" * 48, "03=" + "11" * 48])


_PCR_COMMANDS = [
    ("nitrokit.cli.attestation", ["verify", "-", "--root", "fixture"]),
    ("nitrokit.cli.policy_statements", ["policy"]),
    ("nitrokit.cli.kms_sim", ["kms-sim"]),
    ("nitrokit.enclave.cli", ["enclave", "attest", "--nsm", "simulated"]),
]


@pytest.mark.parametrize(("module", "command"), _PCR_COMMANDS, ids=[c[1][0] for c in _PCR_COMMANDS])
@pytest.mark.parametrize("index", ["\u00b3", "\u0663", "32"])
def test_every_command_parses_pcr_the_same_way(module: str, command: list[str], index: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    # Before one parser: `nitrokit policy --pcr ³=...` was a traceback and `٣=...` meant PCR3 (kms-sim alike).
    only_commands(monkeypatch, module)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert cli.main([*command, "--pcr", f"{index}={'ab' * 48}"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert ("is not N=HEX" if index != "32" else "PCR index 32 is not in 0..31") in err


@pytest.mark.parametrize(("items", "fragment"), [
    (["novalue"], "expected KEY=VALUE"),
    (["=v"], "expected KEY=VALUE"),
    (["k=1", "k=2"], "given twice"),
    (["\x1b[2J=v", "\x1b[2J=w"], "\\x1b[2J"),
])
def test_one_encryption_context_parser_for_every_command(items: list[str], fragment: str,
                                                         capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        parse_encryption_context(items)
    assert fragment in str(caught.value) and "\x1b" not in str(caught.value)
    assert parse_encryption_context(["a=b", "c=d=e", "empty="]) == {"a": "b", "c": "d=e", "empty": ""}
    assert parse_encryption_context([]) is None
    # The enclave's KMS commands and kms-sim explain both use it: same refusal, exit 2, from either command.
    policy = tmp_path / "policy.json"
    policy.write_text('{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}')
    for argv in (["enclave", "decrypt", "--ciphertext-blob", str(policy), "--nsm", "simulated"],
                 ["kms-sim", "explain", "--policy", str(policy), "--operation", "Decrypt"]):
        args = [a for item in items for a in ("--encryption-context", item)]
        assert cli.main([*argv, *args]) == EXIT_USAGE
        assert fragment in capsys.readouterr().err
