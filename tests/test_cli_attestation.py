"""``nitrokit verify`` and ``nitrokit inspect`` as subprocesses: exit codes, output, input forms."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from nitrokit.testing import build_document
from tests.cli_helpers import run_cli
from tests.conftest import FIXTURES, vector_path
from tests.pki_helpers import T0

EXAMPLE = str(FIXTURES / "documents" / "example.cbor")
ROOT = str(FIXTURES / "pki" / "root.pem")


def test_the_example_document_verifies_at_its_own_time() -> None:
    result = run_cli("verify", EXAMPLE, "--root", ROOT, "--at", "document")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"VALID: ")


def test_expired_now_exits_1_with_the_reason() -> None:
    result = run_cli("verify", EXAMPLE, "--root", ROOT)
    assert result.returncode == 1
    assert b"NOT VALID: chain validity: certificate: expired" in result.stdout


def test_json_output_and_policy_options(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    doc = tmp_path / "doc.cbor"
    doc.write_bytes(build_document(at=T0, nonce=b"\x01\x02", user_data=b"\xaa", public_key=spki))
    pem = tmp_path / "key.pem"
    pem.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    args = ["verify", str(doc), "--root", "fixture", "--at", T0.isoformat(), "--pcr", "0=" + "01" * 48,
            "--pcr", "3=" + "04" * 48, "--nonce", "0102", "--user-data", "AA", "--public-key", str(pem), "--json"]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["checks"][-4:] == ["policy: pcrs 0,3", "policy: nonce", "policy: user_data", "policy: public_key"]
    assert report["nonce"] == "0102"

    bad = run_cli(*[a if a != "0102" else "0103" for a in args])
    assert bad.returncode == 1
    failure = json.loads(bad.stdout)
    assert failure == {"valid": False, "step": "policy", "field": "nonce", "error": failure["error"]}


def test_base64_on_stdin_is_detected() -> None:
    data = base64.b64encode(Path(EXAMPLE).read_bytes())
    result = run_cli("verify", "-", "--root", ROOT, "--at", "document", input=data)
    assert result.returncode == 0, result.stderr


def test_real_document_with_the_default_aws_root() -> None:
    path = str(vector_path("nitro-attestation", "marlin-2024-04-03.cbor"))
    assert run_cli("verify", path, "--at", "document").returncode == 0
    assert run_cli("verify", path, "--at", "document", "--max-age", "60").returncode == 0
    debug = str(vector_path("nitro-attestation", "evervault-debug-2022-10-12.cbor"))
    refused = run_cli("verify", debug, "--at", "document")
    assert refused.returncode == 1 and b"debug mode" in refused.stdout
    assert run_cli("verify", debug, "--at", "document", "--allow-debug").returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["verify", EXAMPLE, "--pcr", "0"], b"is not N=HEX"),
        (["verify", EXAMPLE, "--pcr", "0=xyz"], b"not valid hex"),
        (["verify", EXAMPLE, "--pcr", "40=" + "00" * 48], b"0..31"),
        (["verify", EXAMPLE, "--at", "yesterday"], b"ISO-8601"),
        (["verify", EXAMPLE, "--max-age", "-1"], b"--max-age must be a number of seconds"),
        (["verify", EXAMPLE, "--max-age", "nan"], b"--max-age must be a number of seconds"),
        (["verify", EXAMPLE, "--max-age", "inf"], b"--max-age must be a number of seconds"),
        (["verify", EXAMPLE, "--max-age", "1e20"], b"--max-age must be a number of seconds"),
        (["verify", "/nonexistent/doc.cbor"], b"I/O error"),
        (["verify", EXAMPLE, "--root", "/nonexistent/root.pem"], b"root: cannot read /nonexistent/root.pem"),
        (["inspect", "/nonexistent/doc.cbor"], b"I/O error"),
    ],
)
def test_usage_and_io_errors_exit_2(args: list[str], message: bytes) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert b"Traceback" not in result.stderr


def test_garbage_is_not_valid_not_a_crash(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x84\x01\x02")
    result = run_cli("verify", str(garbage))
    assert result.returncode == 1
    assert b"NOT VALID: parse" in result.stdout
    assert b"Traceback" not in result.stderr
    inspect = run_cli("inspect", str(garbage))
    assert inspect.returncode == 1 and b"parse" in inspect.stderr


def test_inspect_shows_the_structure_without_verifying() -> None:
    result = run_cli("inspect", EXAMPLE)
    assert result.returncode == 0
    text = result.stdout.decode()
    assert text.startswith("NOT VERIFIED")
    assert "i-00000000000000000-enc0000000000000000" in text
    assert "PCR0" in text and "01" * 48 in text
    assert "cabundle[0]  CN=nitrokit-fixture-root" in text.replace("cabundle[0] ", "cabundle[0]  ")
    as_json = json.loads(run_cli("inspect", EXAMPLE, "--json").stdout)
    assert as_json["verified"] is False
    assert as_json["sizes"]["nonce"] == len(b"nitrokit example nonce")
    assert [c["position"] for c in as_json["certificates"]] == ["certificate"] + [f"cabundle[{i}]" for i in range(4)]
