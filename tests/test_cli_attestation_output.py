"""What ``nitrokit inspect``/``verify`` print from a hostile document: escaped text, valid JSON, and the hints a
first failure gives."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from nitrokit.testing import build_document
from tests.cli_helpers import run_cli
from tests.conftest import FIXTURES, vector_path
from tests.pki_helpers import T0

EXAMPLE = str(FIXTURES / "documents" / "example.cbor")
# Clears the screen, homes the cursor and prints a fake verdict, as a document could.
FAKE_VERDICT = "\x1b[2J\x1b[HVALID: trusted\x07"
ESC = b"\x1b"


def _strict_json(text: bytes) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fixture-signed document with escape sequences in module_id (so in the leaf's CN too), an unknown text
    field and its key, and NaN and infinities in unknown fields."""
    path = tmp_path_factory.mktemp("hostile") / "doc.cbor"
    path.write_bytes(build_document(at=T0, module_id="i-0" + FAKE_VERDICT, extra={
        "note" + FAKE_VERDICT: FAKE_VERDICT, "nan": math.nan, "inf": math.inf, "-inf": -math.inf,
        "nested": [FAKE_VERDICT, {"k": FAKE_VERDICT}]}))
    return path


def test_inspect_escapes_every_untrusted_text(hostile: Path) -> None:
    result = run_cli("inspect", str(hostile))
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout and b"\x07" not in result.stdout
    text = result.stdout.decode()
    assert text.startswith("NOT VERIFIED")
    assert "module_id:  i-0\\x1b[2J\\x1b[HVALID: trusted\\x07" in text
    assert "CN=i-0\\x1b[2J" in text  # the signing certificate's subject
    assert "unknown field (not trusted) 'note\\x1b[2J" in text
    assert not any(line.startswith("VALID") for line in text.splitlines())


def test_inspect_json_is_valid_json_with_no_nan(hostile: Path) -> None:
    result = run_cli("inspect", str(hostile), "--json")
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout
    report = _strict_json(result.stdout)
    assert report["module_id"] == "i-0" + FAKE_VERDICT  # JSON escapes it; the value itself is kept
    unknown = report["unknown_fields"]
    assert unknown["nan"] == {"float": "nan"}
    assert unknown["inf"] == {"float": "inf"} and unknown["-inf"] == {"float": "-inf"}


def test_verify_escapes_the_module_id_and_the_chain(hostile: Path) -> None:
    result = run_cli("verify", str(hostile), "--root", "fixture", "--at", T0.isoformat())
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout and ESC not in result.stderr
    assert result.stdout.startswith(b"VALID: i-0\\x1b[2J")
    as_json = run_cli("verify", str(hostile), "--root", "fixture", "--at", T0.isoformat(), "--json")
    assert as_json.returncode == 0 and ESC not in as_json.stdout
    assert _strict_json(as_json.stdout)["unknown_fields"]["nan"] == {"float": "nan"}


def test_verify_escapes_untrusted_text_in_the_reason(tmp_path: Path) -> None:
    """A refusal message may quote the document (here a certificate subject): it reaches the terminal escaped."""
    result = run_cli("verify", str(_self_signed_bundle(tmp_path)), "--root", "fixture", "--at", T0.isoformat())
    assert result.returncode == 1
    assert result.stdout.startswith(b"NOT VALID: chain: cabundle[0]")
    assert ESC not in result.stdout and ESC not in result.stderr


def _self_signed_bundle(tmp_path: Path) -> Path:
    from tests.pki_helpers import Spec, default_specs, document_from_chain, make_chain

    specs = [Spec("root" + FAKE_VERDICT), *default_specs()[1:]]
    path = tmp_path / "self-signed.cbor"
    path.write_bytes(document_from_chain(make_chain(specs)))
    return path


# --- first failures teach ------------------------------------------------------------------------------

def test_a_real_document_checked_now_suggests_at_document() -> None:
    path = str(vector_path("nitro-attestation", "marlin-2024-04-03.cbor"))
    result = run_cli("verify", path)
    assert result.returncode == 1
    assert b"NOT VALID: chain validity" in result.stdout
    assert b"hint: " in result.stderr and b"--at document" in result.stderr
    report = json.loads(run_cli("verify", path, "--json").stdout)
    assert report["valid"] is False and "--at document" in report["hint"]


def test_a_simulated_document_checked_against_the_aws_root_suggests_root_fixture() -> None:
    result = run_cli("verify", EXAMPLE, "--at", "document")
    assert result.returncode == 1
    assert b"NOT VALID: chain" in result.stdout
    assert b"--root fixture" in result.stderr
    report = json.loads(run_cli("verify", EXAMPLE, "--at", "document", "--json").stdout)
    assert "--root fixture" in report["hint"]


def test_no_hint_where_neither_applies() -> None:
    path = str(vector_path("nitro-attestation", "evervault-debug-2022-10-12.cbor"))
    result = run_cli("verify", path, "--at", "document")  # refused for debug mode: nothing to suggest
    assert result.returncode == 1
    assert b"hint:" not in result.stderr
    assert "hint" not in json.loads(run_cli("verify", path, "--at", "document", "--json").stdout)


@pytest.mark.parametrize("field", ["digest", "pcrs"])
@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_a_refused_field_is_not_echoed_raw(field: str, command: str, tmp_path: Path) -> None:
    bad = {"digest": FAKE_VERDICT, "pcrs": {FAKE_VERDICT: b"\x00" * 48}}[field]
    path = tmp_path / "bad.cbor"
    path.write_bytes(build_document(at=T0, extra={field: bad}))
    for args in ([command, str(path)], [command, str(path), "--json"]):
        result = run_cli(*args)
        assert result.returncode == 1, result.stderr
        assert ESC not in result.stdout and ESC not in result.stderr
        assert b"Traceback" not in result.stderr
