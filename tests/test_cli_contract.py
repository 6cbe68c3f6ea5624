"""What every ``nitrokit`` command promises, checked over every command the dispatcher builds (issue 12, items
18, 19 and 21): a closed standard output keeps the verdict, ``--json`` always prints one JSON object, and
``--log-level`` takes any case."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import nitrokit.cli as cli
from tests.conftest import FIXTURES, REPO

EXAMPLE = str(FIXTURES / "documents" / "example.cbor")
VERIFY_EXAMPLE = ["verify", EXAMPLE, "--root", "fixture", "--at", "document", "--json"]


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every (command words, parser) the dispatcher has, nested groups included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from subcommands(child, (*path, name))


def commands_with(option: str) -> list[tuple[str, ...]]:
    found = [path for path, parser in subcommands(cli.build_parser()) if option in parser._option_string_actions]
    assert found, f"no command has {option}"
    return found


# --- item 18: a reader closing stdout early ------------------------------------------------------------------

def run_with_stdout_closed(*args: str) -> tuple[int, bytes]:
    """Run nitrokit with a stdout pipe whose reading end is closed before it writes anything."""
    process = subprocess.Popen([sys.executable, "-m", "nitrokit", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=REPO)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head -0` would: every write the command makes meets EPIPE
    stderr = process.stderr.read()
    return process.wait(timeout=60), stderr


@pytest.mark.parametrize(("args", "verdict"), [
    (VERIFY_EXAMPLE, 0),
    (["verify", str(FIXTURES / "pki" / "root.pem"), "--json"], 1),  # not a document: NOT VALID, exit 1
    (["inspect", EXAMPLE], 0),
    (["--help"], 0),
], ids=["valid", "not-valid", "inspect", "help"])
def test_a_closed_stdout_keeps_the_verdict_silently(args: list[str], verdict: int) -> None:
    code, stderr = run_with_stdout_closed(*args)
    assert code == verdict
    assert_quiet_about_the_pipe(stderr)


def assert_quiet_about_the_pipe(stderr: bytes) -> None:
    """Nothing on stderr about the closed pipe (a command's own warnings, such as an unpinned PCR, may stay)."""
    for noise in (b"Broken pipe", b"BrokenPipe", b"Traceback", b"Exception ignored", b"I/O error"):
        assert noise not in stderr, stderr


@pytest.mark.parametrize(("args", "verdict"), [(VERIFY_EXAMPLE, 0), (["inspect", EXAMPLE], 0)],
                         ids=["verify", "inspect"])
def test_a_closed_file_descriptor_keeps_the_verdict_silently(args: list[str], verdict: int) -> None:
    """``>&-``: no standard output at all (sys.stdout is None), found by the hostile re-test."""
    command = " ".join([sys.executable, "-m", "nitrokit", *args])
    result = subprocess.run(["sh", "-c", f"exec {command} >&-"], capture_output=True, cwd=REPO, timeout=60,
                            check=False)
    assert result.returncode == verdict, result.stderr
    assert_quiet_about_the_pipe(result.stderr)


@pytest.mark.parametrize("args", [VERIFY_EXAMPLE, ["inspect", EXAMPLE, "--json"], ["inspect", EXAMPLE]],
                         ids=["verify-json", "inspect-json", "inspect"])
def test_output_that_cannot_be_written_is_an_io_error_not_a_traceback(args: list[str]) -> None:
    """A full disk (/dev/full): the verdict was never delivered, so exit 2 with one I/O error line."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "nitrokit", *args], stdout=full, stderr=subprocess.PIPE,
                                cwd=REPO, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert b"No space left on device" in result.stderr
    assert b"Traceback" not in result.stderr and b"Exception ignored" not in result.stderr


def test_a_reader_taking_one_line_keeps_the_verdict() -> None:
    """The review's pipeline itself: `nitrokit verify DOC --json | head -1`, with pipefail to see nitrokit's
    status."""
    command = " ".join([sys.executable, "-m", "nitrokit", *VERIFY_EXAMPLE])
    result = subprocess.run(["bash", "-o", "pipefail", "-c", f"{command} | head -1"], capture_output=True,
                            cwd=REPO, timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, b"{\n")
    assert_quiet_about_the_pipe(result.stderr)


# --- item 19: --json prints one JSON object, errors included ---------------------------------------------------

def one_json_object(text: str) -> Any:
    value, end = json.JSONDecoder().raw_decode(text.strip())
    assert end == len(text.strip()), f"more than one JSON value on stdout: {text!r}"
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("path", commands_with("--json"), ids=" ".join)
def test_json_usage_errors_are_one_json_object(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*path, "--json", "--no-such-option", "x"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    error = one_json_object(captured.out)
    assert error["exit_code"] == 2 and error["error"]["kind"] == "usage"
    assert error["error"]["message"] in captured.err  # the message for humans stays on stderr


@pytest.mark.parametrize("words", [["verify", "--json"], ["inspect", "--json"], ["cms", "inspect", "--json"],
                                   ["eif", "describe", "--json"]], ids=" ".join)
def test_json_missing_arguments_are_one_json_object(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(words)
    error = one_json_object(capsys.readouterr().out)
    assert (error["error"]["kind"], error["exit_code"]) == ("usage", 2)


@pytest.mark.parametrize("words", [["verify"], ["inspect"], ["cms", "inspect"], ["eif", "describe"]], ids=" ".join)
def test_json_io_errors_are_one_json_object(words: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "no-such-file")
    assert cli.main([*words, missing, "--json"]) == 2
    captured = capsys.readouterr()
    error = one_json_object(captured.out)
    assert error == {"error": {"kind": "io", "message": error["error"]["message"]}, "exit_code": 2}
    assert "No such file" in error["error"]["message"] and "I/O error" in captured.err


def test_json_usage_errors_from_a_real_process() -> None:
    result = subprocess.run([sys.executable, "-m", "nitrokit", "verify", "--json", "--at", "yesterday-ish", EXAMPLE],
                            capture_output=True, cwd=REPO, timeout=60, check=False)
    assert result.returncode == 2
    error = one_json_object(result.stdout.decode())
    assert (error["error"]["kind"], error["exit_code"]) == ("usage", 2)


def test_without_json_errors_stay_off_stdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["verify", str(tmp_path / "no-such-file")]) == 2
    with pytest.raises(SystemExit):
        cli.main(["verify", "--no-such-option"])
    assert capsys.readouterr().out == ""


# --- item 21: log levels in any case ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", commands_with("--log-level"), ids=" ".join)
@pytest.mark.parametrize("spelling", ["debug", "DEBUG", "Debug", "warning", "WARNING", "Error"])
def test_every_log_level_takes_any_case(path: tuple[str, ...], spelling: str) -> None:
    parser = cli.build_parser()
    assert parser.parse_args([*path, "--log-level", spelling]).log_level == spelling.upper()
    assert parser.parse_args([*path]).log_level in ("DEBUG", "INFO", "WARNING", "ERROR")


@pytest.mark.parametrize("path", commands_with("--log-level"), ids=" ".join)
def test_an_unknown_log_level_is_a_usage_error(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*path, "--log-level", "verbose"])
    assert exited.value.code == 2 and "VERBOSE" in capsys.readouterr().err
