"""common/strict_json.py: the one strict JSON loader, and every reader of untrusted JSON using it with its own
typed error (wire frames, EIF metadata, the simulated KMS's request bodies, config files and policy files).

EIF metadata is covered in tests/test_eif.py, the simulated KMS's request bodies in tests/test_kms_server.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from nitrokit.cli.kms_sim import build_config
from nitrokit.kms import AttestationConditions, KmsConfigError, load_config
from nitrokit.strict_json import StrictJsonError, loads
from nitrokit.wire import MalformedFrameError, decode_request

PCR0 = "ab" * 48
DUPLICATE_POLICY = ('{"Effect": "Allow", "Condition": {"StringEqualsIgnoreCase": {'
                    f'"kms:RecipientAttestation:PCR0": "{PCR0}", "kms:RecipientAttestation:PCR0": "{"cd" * 48}"'
                    '}}}')


def test_plain_json_loads() -> None:
    assert loads(b'{"a": [1, 2.5, "x", null, true]}', what="input", max_bytes=100) == {
        "a": [1, 2.5, "x", None, True]}
    assert loads('"text"', what="input", max_bytes=100) == "text"


@pytest.mark.parametrize(("data", "fragment"), [
    (b'{"a": 1, "a": 2}', "duplicate key 'a' in an object"),
    (b'{"a": NaN}', "NaN is not allowed"),
    (b'{"a": -Infinity}', "-Infinity is not allowed"),
    (b'{"a": 1e999}', "a number out of range"),
    (b'{"a": 1', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    ('{"a":1}'.encode("utf-16"), "not UTF-8"),
    (b"[" * 65 + b"]" * 65, "nested deeper than 64 levels"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b" " * 101, "101 bytes, over the limit of 100 bytes"),
])
def test_what_json_loads_would_let_through_is_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(StrictJsonError) as info:
        loads(data, what="the input", max_bytes=100 if data.strip() == b"" else 10**6)
    assert str(info.value).startswith("the input ") and fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_depth_is_a_bound_the_caller_sets() -> None:
    assert loads(b"[[[]]]", what="x", max_bytes=100, max_depth=3) == [[[]]]
    with pytest.raises(StrictJsonError, match="deeper than 2"):
        loads(b"[[[]]]", what="x", max_bytes=100, max_depth=2)


def test_the_wire_keeps_its_malformed_frame_error() -> None:
    with pytest.raises(MalformedFrameError, match="duplicate key"):
        decode_request(b'{"version": 1, "version": 1, "id": "a", "operation": "GenerateRandom", "request": {}}')


def test_a_kms_sim_config_file_with_duplicate_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kms.json"
    path.write_text('{"region": "us-east-1", "region": "eu-west-1"}')
    with pytest.raises(KmsConfigError, match="duplicate key 'region'"):
        load_config(path)
    path.write_text('{"faults": {"internal_error_rate": NaN}}')
    with pytest.raises(KmsConfigError, match="NaN is not allowed"):
        load_config(path)


def test_a_policy_file_with_duplicate_keys_is_refused(tmp_path: Path) -> None:
    # json.loads kept the last PCR0 silently: a policy file could say two things and be read as one.
    assert json.loads(DUPLICATE_POLICY)
    with pytest.raises(KmsConfigError, match="duplicate key 'kms:RecipientAttestation:PCR0'"):
        AttestationConditions.from_json_text(DUPLICATE_POLICY)
    path = tmp_path / "statement.json"
    path.write_text(DUPLICATE_POLICY)
    args = argparse.Namespace(config=None, root=None, region=None, recipient_required=False, any_credentials=False,
                              policy=str(path), pcr=[], image_sha384=None)
    with pytest.raises(KmsConfigError, match=f"--policy {path} is not valid JSON: duplicate key"):
        build_config(args)

