"""``nitrokit enclave serve``'s logs and the ``nitrokit enclave call`` client on the simulated stack.

simulated KMS <- parent process <- ``nitrokit enclave serve`` process <- ``nitrokit enclave call`` (run in this
process through the CLI's ``main``, as a user's shell would run it, minus the interpreter start-up).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from nitrokit import cli
from nitrokit.attestation import parse_document
from nitrokit.kms import SimulatedKms
from nitrokit.testing.processes import NitrokitProcess
from nitrokit.wire.service import verify_service_signature
from tests.test_enclave_service import service, stack  # noqa: F401 - the module's fixtures, shared


class Ran(NamedTuple):
    returncode: int
    stdout: bytes
    stderr: bytes


@pytest.fixture
def run_cli(capsysbinary: pytest.CaptureFixture[bytes]) -> Callable[..., Ran]:
    def run(*args: str) -> Ran:
        try:
            code = cli.main(list(args))
        except SystemExit as exc:  # argparse's usage errors, as the shell would see them
            code = int(exc.code or 0)
        out, err = capsysbinary.readouterr()
        return Ran(code, out, err)

    return run


def test_attest_and_sign_from_the_command_line(run_cli, service: NitrokitProcess, tmp_path: Path) -> None:  # noqa: F811
    document_path = tmp_path / "service.doc"
    attest = run_cli("enclave", "call", "Attest", "--service", service.first_line, "--nonce", "c0ffee",
                     "--out", str(document_path))
    assert attest.returncode == 0, attest.stderr
    verify = run_cli("verify", str(document_path), "--root", "fixture", "--nonce", "c0ffee")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    public_key = parse_document(document_path.read_bytes()).public_key
    assert public_key is not None

    sign = run_cli("enclave", "call", "Sign", "--service", service.first_line, "--message", b"hello".hex())
    assert sign.returncode == 0, sign.stderr
    signature = base64.b64decode(sign.stdout.strip(), validate=True)
    assert verify_service_signature(public_key, b"hello", signature)
    (tmp_path / "message").write_bytes(b"from a file")
    from_file = run_cli("enclave", "call", "Sign", "--service", service.first_line, "--message-file",
                        str(tmp_path / "message"), "--format", "hex")
    assert from_file.returncode == 0, from_file.stderr
    assert verify_service_signature(public_key, b"from a file", bytes.fromhex(from_file.stdout.decode().strip()))


def test_the_service_logs_a_start_line_and_one_line_per_call(run_cli, service: NitrokitProcess) -> None:  # noqa: F811
    # Issue 12: the service logged nothing, though docs/protocol.md promises one line per call.
    before = service.stderr_text(limit=100_000).count(" call op=Sign ")
    assert run_cli("enclave", "call", "Sign", "--service", service.first_line, "--message", "00").returncode == 0
    log = service.stderr_text(limit=100_000)
    assert "nitrokit.enclave asking KMS for the identity seed through the parent" in log
    assert "mixed with NSM entropy" in log
    assert f"nitrokit.enclave listening on {service.first_line} (identity P-384 key sha256:" in log
    assert log.count(" call op=Sign ") == before + 1
    line = [entry for entry in log.splitlines() if " call op=Sign " in entry][-1]
    assert "outcome=ok" in line and " ms=" in line


def test_log_level_warning_keeps_only_warnings(run_cli, stack: tuple[SimulatedKms, str, Path]) -> None:  # noqa: F811
    _, parent, folder = stack
    with NitrokitProcess("enclave", "serve", "--listen", f"unix://{folder / 'quiet.sock'}", "--parent", parent,
                         "--nsm", "simulated", "--log-level", "WARNING") as quiet:
        assert run_cli("enclave", "call", "Sign", "--service", quiet.first_line, "--message", "00").returncode == 0
        assert " call op=" not in quiet.stderr_text() and "listening on" not in quiet.stderr_text()


def test_call_errors_are_typed_and_exit_nonzero(run_cli, service: NitrokitProcess, tmp_path: Path) -> None:  # noqa: F811
    unreachable = run_cli("enclave", "call", "Sign", "--service", f"unix://{tmp_path}/none.sock", "--message", "00")
    assert unreachable.returncode == 1 and b"Traceback" not in unreachable.stderr
    too_long = run_cli("enclave", "call", "Attest", "--service", service.first_line, "--nonce", "00" * 1025,
                       "--out", str(tmp_path / "x"))
    assert too_long.returncode == 2 and b"1 to 1024 bytes" in too_long.stderr, too_long.stderr  # before sending
    assert b"Traceback" not in too_long.stderr
    no_message = run_cli("enclave", "call", "Sign", "--service", service.first_line)
    assert no_message.returncode == 2
