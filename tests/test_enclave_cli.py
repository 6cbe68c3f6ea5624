"""``nitrokit enclave ...``: through the real dispatcher (exit codes, messages), and one run as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit import cli
from nitrokit.attestation import Policy, PolicyError, Verifier, parse_document
from nitrokit.enclave import cli as enclave_cli
from nitrokit.enclave.nsm import NsmUnavailableError
from tests.conftest import FIXTURES, REPO

ROOT = str(FIXTURES / "pki" / "root.pem")


def nitrokit(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, str]:
    code = cli.main(["enclave", *args])
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def json_of(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> Any:
    code, out, err = nitrokit(capsysbinary, *args)
    assert code == 0, err
    return json.loads(out)


def fresh_verifier() -> Verifier:
    return Verifier(root=ROOT)


# --- attest ---------------------------------------------------------------------------------------------


def test_attest_writes_a_document_with_the_requested_fields(capsysbinary: pytest.CaptureFixture[bytes],
                                                            tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    out = tmp_path / "doc.cbor"
    code, stdout, err = nitrokit(capsysbinary, "attest", "--nsm", "simulated", "--public-key", str(pem),
                                 "--user-data", "0xC0FFEE", "--nonce", "0102", "--out", str(out))
    assert (code, stdout, err) == (0, b"", "")
    policy = Policy(public_key=spki, user_data=b"\xc0\xff\xee", nonce=b"\x01\x02")
    assert fresh_verifier().verify(out.read_bytes(), policy=policy).document.public_key == spki


def test_attest_to_stdout_with_a_raw_public_key_file(capsysbinary: pytest.CaptureFixture[bytes],
                                                     tmp_path: Path) -> None:
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"\x04" + bytes(range(64)))
    code, stdout, _ = nitrokit(capsysbinary, "attest", "--nsm", "simulated", "--public-key", str(raw))
    assert code == 0
    document = fresh_verifier().verify(stdout, policy=Policy.any_enclave_image()).document
    assert document.public_key == raw.read_bytes()
    assert (document.user_data, document.nonce) == (None, None)


def test_attest_shapes_simulated_pcrs_and_debug_mode(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, stdout, _ = nitrokit(capsysbinary, "attest", "--nsm", "simulated", "--pcr", "0=" + "ab" * 48,
                               "--pcr", "8=" + "CD" * 48)
    assert code == 0
    pcrs = fresh_verifier().verify(stdout, policy=Policy.any_enclave_image()).document.pcrs
    assert (pcrs[0], pcrs[8]) == (b"\xab" * 48, b"\xcd" * 48)

    code, stdout, _ = nitrokit(capsysbinary, "attest", "--nsm", "simulated", "--debug")
    assert code == 0
    with pytest.raises(PolicyError, match="debug"):
        fresh_verifier().verify(stdout, policy=Policy.any_enclave_image())
    assert parse_document(stdout).is_debug


@pytest.mark.parametrize(("args", "message"), [
    (["--pcr", "0=" + "ab" * 48], "simulated documents only"),
    (["--debug"], "simulated documents only"),
    (["--nsm", "simulated", "--pcr", "16=" + "ab" * 48], "PCR 16"),
    (["--nsm", "simulated", "--pcr", "0=abcd"], "48 bytes"),
    (["--nsm", "simulated", "--pcr", "0=zz"], "not valid hex"),
    (["--nsm", "simulated", "--pcr", "x=00"], "not N=HEX"),
    (["--nsm", "simulated", "--pcr", "1=" + "00" * 48, "--pcr", "1=" + "00" * 48], "given twice"),
    (["--nsm", "simulated", "--pcr", "1=" + "00" * 48, "--debug"], "debug mode"),
    (["--nsm", "simulated", "--nonce", "0g"], "--nonce is not valid hex"),
], ids=lambda value: str(value)[:30])
def test_attest_usage_errors_exit_2(capsysbinary: pytest.CaptureFixture[bytes], args: list[str],
                                    message: str) -> None:
    code, stdout, err = nitrokit(capsysbinary, "attest", *args)
    assert (code, stdout) == (2, b"")
    assert message in err


@pytest.mark.parametrize("args", [
    ["--user-data", "00" * 1025],
    ["--nonce", "00" * 1025],
    ["--nonce", "00" * 5000],  # over the 4096-byte request limit
], ids=["user-data 1025", "nonce 1025", "request over 4096"])
def test_requests_over_the_nsm_limits_are_refused_with_its_error(capsysbinary: pytest.CaptureFixture[bytes],
                                                                  args: list[str]) -> None:
    code, stdout, err = nitrokit(capsysbinary, "attest", "--nsm", "simulated", *args)
    assert (code, stdout) == (1, b"")
    assert "InputTooLarge" in err


def test_a_public_key_over_the_field_limit_is_the_nsms_refusal(capsysbinary: pytest.CaptureFixture[bytes],
                                                                tmp_path: Path) -> None:
    big = tmp_path / "big.key"
    big.write_bytes(bytes(1025))
    code, _, err = nitrokit(capsysbinary, "attest", "--nsm", "simulated", "--public-key", str(big))
    assert code == 1 and "InputTooLarge" in err


def test_a_pem_file_that_is_not_a_public_key_is_a_usage_error(capsysbinary: pytest.CaptureFixture[bytes],
                                                               tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    code, _, err = nitrokit(capsysbinary, "attest", "--nsm", "simulated", "--public-key", str(bad))
    assert code == 2 and "not a public key" in err


def test_attest_refuses_to_write_binary_to_a_terminal(capsysbinary: pytest.CaptureFixture[bytes],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, stdout, err = nitrokit(capsysbinary, "attest", "--nsm", "simulated")
    assert (code, stdout) == (2, b"")
    assert "terminal" in err


@pytest.mark.skipif(os.path.exists("/dev/nsm"), reason="this machine has an NSM")
@pytest.mark.parametrize("args", [["attest"], ["describe-pcr", "0"], ["extend-pcr", "16", "00"], ["describe-nsm"]])
def test_the_default_device_is_absent_here(capsysbinary: pytest.CaptureFixture[bytes], args: list[str]) -> None:
    code, stdout, err = nitrokit(capsysbinary, *args)
    assert (code, stdout) == (2, b"")  # a usage error: the wrong NSM for this machine
    assert "/dev/nsm does not exist: it only exists inside a Nitro enclave; use --nsm simulated elsewhere" in err


def test_a_device_that_exists_but_fails_to_open_is_still_exit_1(capsysbinary: pytest.CaptureFixture[bytes],
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    def unopenable(kind: str, **options: Any) -> Any:
        raise NsmUnavailableError("cannot open /dev/nsm: Permission denied")

    monkeypatch.setattr(enclave_cli, "open_nsm", unopenable)
    monkeypatch.setattr(enclave_cli, "DEFAULT_DEVICE_PATH", str(tmp_path))  # a path that exists
    code, stdout, err = nitrokit(capsysbinary, "describe-nsm")
    assert (code, stdout) == (1, b"") and "Permission denied" in err


# --- describe-pcr, extend-pcr, describe-nsm -------------------------------------------------------------


def test_describe_pcr(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    report = json_of(capsysbinary, "describe-pcr", "16", "--nsm", "simulated")
    assert report == {"index": 16, "locked": False, "data": "00" * 48, "nsm": "simulated"}
    assert json_of(capsysbinary, "describe-pcr", "0", "--nsm", "simulated")["locked"] is True


def test_describe_pcr_errors(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, _, err = nitrokit(capsysbinary, "describe-pcr", "32", "--nsm", "simulated")
    assert code == 1 and "InvalidIndex" in err
    code, _, err = nitrokit(capsysbinary, "describe-pcr", "65536", "--nsm", "simulated")
    assert code == 2 and "0..65535" in err
    with pytest.raises(SystemExit) as exited:
        cli.main(["enclave", "describe-pcr", "three", "--nsm", "simulated"])
    assert exited.value.code == 2


def test_extend_pcr_shows_one_extend_from_the_start_state(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    report = json_of(capsysbinary, "extend-pcr", "16", "C0FFEE", "--nsm", "simulated")
    assert report == {"index": 16, "data": hashlib.sha384(bytes(48) + b"\xc0\xff\xee").hexdigest(),
                      "nsm": "simulated"}
    assert json_of(capsysbinary, "extend-pcr", "16", "C0FFEE", "--nsm", "simulated") == report  # no state kept


def test_extend_pcr_errors(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, _, err = nitrokit(capsysbinary, "extend-pcr", "3", "00", "--nsm", "simulated")
    assert code == 1 and "ReadOnlyIndex" in err
    code, _, err = nitrokit(capsysbinary, "extend-pcr", "16", "xyz", "--nsm", "simulated")
    assert code == 2 and "not valid hex" in err
    code, _, err = nitrokit(capsysbinary, "extend-pcr", "16", "00" * 4096, "--nsm", "simulated")
    assert code == 1 and "InputTooLarge" in err


def test_describe_nsm(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    report = json_of(capsysbinary, "describe-nsm", "--nsm", "simulated")
    assert report == {"version_major": 1, "version_minor": 0, "version_patch": 0,
                      "module_id": "i-00000000000000000-enc0000000000000000", "max_pcrs": 32,
                      "locked_pcrs": list(range(16)), "digest": "SHA384", "version": "1.0.0", "nsm": "simulated"}


def test_help_mentions_the_simulated_nsm_has_no_state(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["enclave", "extend-pcr", "--help"])
    out, _ = capsysbinary.readouterr()
    assert b"keeps no state between commands" in out


def test_register_builds_a_standalone_group() -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="x")
    enclave_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["enclave", "describe-pcr", "5"])
    assert (args.index, args.nsm, args.handler) == (5, "device", enclave_cli.run_describe_pcr)


def test_attest_piped_into_verify_as_processes() -> None:
    wire = "import sys, nitrokit.cli as c; raise SystemExit(c.main(sys.argv[1:]))"

    def run(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-c", wire, *args], input=input, capture_output=True, cwd=REPO,
                              timeout=60, check=False)

    attest = run("enclave", "attest", "--nsm", "simulated", "--nonce", "abcd")
    assert attest.returncode == 0, attest.stderr
    verify = run("verify", "-", "--root", ROOT, "--nonce", "abcd", input=attest.stdout)
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.startswith(b"VALID: ")
