"""The fuzz harnesses in the test suite: corpus and crash replay, harness self-checks, a short atheris run.

The replay needs no atheris: every file of fuzz/corpus/<target>/ and fuzz/crashes/<target>/ goes through its
harness, which lets only nitrokit's typed errors pass (fuzz/harnesses.py). Crash files are the inputs that once
broke a target; replaying them is their regression test. With atheris installed (the ``fuzz`` extra), each
target also runs for a few thousand coverage-guided executions in a subprocess, writing nothing into the repo.
Longer runs: ``python fuzz/run.py TARGET --seconds 300`` (docs/fuzzing.md).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest

from fuzz import harnesses
from fuzz.run import MAX_LEN
from nitrokit.attestation import ChainError, MalformedDocumentError, Policy, parse_document
from nitrokit.cms import decrypt
from nitrokit.testing.documents import sign_payload
from tests.conftest import REPO, VECTORS

CORPUS = REPO / "fuzz" / "corpus"
CRASHES = REPO / "fuzz" / "crashes"
TARGETS = list(harnesses.TARGETS)
#: executions per target in the short atheris run (the slowest targets take a few ms each)
SHORT_RUNS = 2000
MAX_CORPUS_BYTES = 512 * 1024


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []


#: Findings in code this suite does not own, reported and not fixed yet: their regression tests are expected to
#: fail, with exactly this exception (anything else fails the test). Remove an entry once its fix lands.
KNOWN_OPEN: dict[str, tuple[type[BaseException], str]] = {}  # none open now


def _crash_params() -> list[Any]:
    params = []
    for target in TARGETS:
        for path in _files(CRASHES / target):
            key = f"{target}/{path.name}"
            marks = []
            if key in KNOWN_OPEN:
                raises, reason = KNOWN_OPEN[key]
                marks.append(pytest.mark.xfail(raises=raises, reason=reason, strict=False))
            params.append(pytest.param(target, path, id=key, marks=marks))
    return params or [pytest.param(None, None, marks=pytest.mark.skip(reason="no crash inputs kept"))]


# -- layout ------------------------------------------------------------------------------------------------------


def test_every_target_has_seeds_and_a_runner_entry():
    assert set(MAX_LEN) == set(TARGETS)
    for target in TARGETS:
        assert any(path.name.startswith("seed-") for path in _files(CORPUS / target)), target
    assert set(harnesses.__all__) >= {f"target_{name}" for name in TARGETS}


def test_merged_corpora_keep_what_their_filter_keeps():
    assert set(harnesses.CORPUS_FILTERS) <= set(TARGETS)
    for target, keep in harnesses.CORPUS_FILTERS.items():
        refused = [path.name for path in _files(CORPUS / target) if not keep(path.read_bytes())]
        assert not [name for name in refused if not name.startswith("seed-")], target


def test_crash_folders_name_real_targets():
    if CRASHES.is_dir():
        assert {path.name for path in CRASHES.iterdir()} <= set(TARGETS)


def test_corpora_are_small_and_hold_no_copy_of_the_real_samples():
    files = [path for target in TARGETS for folder in (CORPUS, CRASHES) for path in _files(folder / target)]
    assert sum(path.stat().st_size for path in files) < MAX_CORPUS_BYTES
    samples = {path.read_bytes() for path in VECTORS.rglob("*") if path.is_file()} if VECTORS.is_dir() else set()
    copies = [path.relative_to(REPO) for path in files if path.read_bytes() in samples]
    assert not copies


# -- replay ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_with_only_typed_errors(target):
    files = _files(CORPUS / target)
    for path in files:
        harnesses.TARGETS[target](path.read_bytes())  # anything but a NitrokitError propagates and fails here


@pytest.mark.parametrize(("target", "path"), _crash_params())
def test_crash_regression(target, path):
    harnesses.TARGETS[target](path.read_bytes())


def test_known_open_findings_name_kept_inputs():
    for key in KNOWN_OPEN:
        assert (CRASHES / key).is_file(), key


#: The findings fixed so far (all in common/attestation), with the typed error each input now gets.
FIXED_FINDINGS = [
    # a malformed issuer name escaped as ValueError (cryptography parses names lazily)
    ("attestation_verify/crash-b4c039efe1238fa333d0b6fe2aa1929a7de97998", ChainError,
     r"cabundle\[0\]: not a DER X.509 certificate"),
    # a timestamp past year 9999 made issued_at raise OverflowError
    ("attestation_verify/crash-a50fd2d212a5aee063b815016afc296b30dce9b2", MalformedDocumentError,
     r"timestamp: \d+ is out of range"),
    ("attestation_signed/crash-07696b8c3cc2815b104ab17e0e5471a280a92fc6", MalformedDocumentError,
     r"timestamp: \d+ is out of range"),
    # a key of an unknown algorithm raised UnsupportedAlgorithm
    ("attestation_verify/crash-3dba3ef80b7eb776899e698d74bc80cfcdf7a226", ChainError,
     r"cabundle\[2\]: public key cannot be parsed"),
    # an X.509 version other than 1 and 3 raised x509.InvalidVersion
    ("attestation_verify/crash-ba4224ef7c1537dd791a33091883183974e33dfe", ChainError,
     r"cabundle\[0\]: not a DER X.509 certificate"),
    ("attestation_signed/crash-5d4f74c2136ae87b7d938faabe684f267824a85a", ChainError,
     r"cabundle\[1\]: not a DER X.509 certificate"),
    # a name attribute whose ASN.1 type does not suit its OID raised TypeError
    ("attestation_verify/crash-0dc7150a451e22f9009090409c1e697eee6f0d95", ChainError,
     r"cabundle\[0\]: not a DER X.509 certificate"),
    # a duplicate extension raised x509.DuplicateExtension (made by hand: the leaf with basicConstraints twice)
    ("attestation_signed/review-duplicate-extension", ChainError, r"certificate: has malformed or duplicate"),
]


@pytest.mark.parametrize(("name", "error", "message"), FIXED_FINDINGS, ids=[item[0] for item in FIXED_FINDINGS])
def test_fixed_finding_gets_its_typed_error(name, error, message):
    data = (CRASHES / name).read_bytes()
    if name.startswith("attestation_signed/"):
        data = sign_payload(data, harnesses.leaf()[1])
    with pytest.raises(error, match=message):
        harnesses._verifier().verify(data, at=harnesses.FIXED_AT, policy=Policy.any_enclave_image())


def test_fixed_findings_outside_attestation_get_typed_errors():
    """The simulated KMS's and the wire decoder's findings, fixed by their owners."""
    from nitrokit.kms.server import _Handler
    from nitrokit.wire import MalformedFrameError, decode_response

    with pytest.raises(MalformedFrameError, match="not valid JSON"):
        decode_response((CRASHES / "wire_response" / "crash-891efbcd35b1c5c3ce022666f54831ffaab73dc9").read_bytes())
    now = datetime.now(UTC)
    for name, status in (("crash-b6d62264eadd7826f969059a1c3afe1ec6a70f06", b"400"),
                         ("review-host-bracket", b"400")):
        data = (CRASHES / "kms_http" / name).read_bytes()
        connection = harnesses._Connection(data.replace(b"@AMZDATE@", now.strftime("%Y%m%dT%H%M%SZ").encode())
                                           .replace(b"@DATE@", now.strftime("%Y%m%d").encode()))
        _Handler(connection, ("127.0.0.1", 1), harnesses._fake_server())  # type: ignore[arg-type]
        assert bytes(connection.sent).startswith(b"HTTP/1.1 " + status + b" "), (name, bytes(connection.sent)[:200])


def test_timestamp_bound_is_the_end_of_year_9999():
    """The bound is the last millisecond a datetime holds, so issued_at works for every accepted document."""
    payload = cbor2.loads((CORPUS / "attestation_signed" / "seed-full").read_bytes())
    for timestamp, ok in ((253402300799999, True), (253402300800000, False)):
        payload["timestamp"] = timestamp
        document = sign_payload(cbor2.dumps(payload), harnesses.leaf()[1])
        if ok:
            assert parse_document(document).issued_at.year == 9999
        else:
            with pytest.raises(MalformedDocumentError):
                parse_document(document)


# -- the seeds reach the deep paths (so the committed keys and corpora belong together) ---------------------------


def test_attestation_seeds_verify_with_the_policy():
    document = (CORPUS / "attestation_verify" / "seed-full").read_bytes()
    result = harnesses._verifier().verify(document, at=harnesses.FIXED_AT, max_age=harnesses.MAX_AGE,
                                          policy=harnesses.POLICY)
    assert "policy: nonce" in result.checks

    payload = (CORPUS / "attestation_signed" / "seed-full").read_bytes()
    signed = sign_payload(payload, harnesses.leaf()[1])
    result = harnesses._verifier().verify(signed, at=harnesses.FIXED_AT, policy=harnesses.POLICY)
    assert result.document.payload == payload


def test_cms_seeds_open_with_the_fuzz_key():
    for size in (0, 1, 32, 1024):
        assert len(decrypt((CORPUS / "cms_decrypt" / f"seed-{size}").read_bytes(), harnesses.cms_key())) == size


def test_kms_seed_with_recipient_is_answered_with_an_envelope():
    kms = harnesses._kms()
    body = harnesses._substitute((CORPUS / "kms_request" / "seed-recipient").read_bytes(), kms.placeholders)
    answer = kms.service.handle(method="POST", path="/", headers=harnesses._signed_headers(body), body=body)
    assert answer.status == 200, answer.body
    envelope = base64.b64decode(json.loads(answer.body)["CiphertextForRecipient"])
    assert len(decrypt(envelope, harnesses.cms_key())) == 32


def test_kms_http_seed_reaches_the_signature_check():
    from nitrokit.kms.server import _Handler

    data = (CORPUS / "kms_http" / "seed-post").read_bytes()
    now = datetime.now(UTC)
    connection = harnesses._Connection(data.replace(b"@AMZDATE@", now.strftime("%Y%m%dT%H%M%SZ").encode())
                                       .replace(b"@DATE@", now.strftime("%Y%m%d").encode()))
    _Handler(connection, ("127.0.0.1", 1), harnesses._fake_server())  # type: ignore[arg-type]
    sent = bytes(connection.sent)
    assert sent.startswith(b"HTTP/1.1 400 ")
    assert b"InvalidSignatureException" in sent and b"does not match" in sent


# -- the harnesses themselves ------------------------------------------------------------------------------------


def test_harness_silences_typed_errors_only(monkeypatch):
    def typed(data):
        raise MalformedDocumentError("bad", field="document")

    def untyped(data):
        raise KeyError("certificate")

    monkeypatch.setattr(harnesses, "parse_document", typed)
    harnesses.target_attestation_parse(b"x")
    monkeypatch.setattr(harnesses, "parse_document", untyped)
    with pytest.raises(KeyError):
        harnesses.target_attestation_parse(b"x")


def test_kms_harness_reports_an_unexpected_error_the_service_turned_into_a_500(monkeypatch):
    from nitrokit.kms import _generate_random

    def broken(params, context):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(_generate_random, "generate_random", broken)
    with pytest.raises(harnesses.FuzzFinding, match="unexpected ZeroDivisionError") as caught:
        harnesses.target_kms_request(b'{"NumberOfBytes": 1}')
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    harnesses.target_kms_request(b"not json")  # refused before the operation: a 400, no finding


def test_wire_harnesses_check_the_round_trip(monkeypatch):
    from nitrokit.wire import encode_frame, encode_request, generate_random_request
    from nitrokit.wire.messages import Request

    body = encode_request(Request(operation="GenerateRandom", request=generate_random_request(8), id="r1"))
    harnesses.target_wire_request(body)
    harnesses.target_wire_stream(encode_frame(body) * 2)
    monkeypatch.setattr(harnesses, "encode_request", lambda request: b'{"version": 1}')
    with pytest.raises(harnesses.FuzzFinding, match="does not encode again"):
        harnesses.target_wire_request(body)
    with pytest.raises(harnesses.FuzzFinding, match="does not encode again"):
        harnesses.target_wire_stream(encode_frame(body))


# -- a short coverage-guided run ----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_short_atheris_run(target, tmp_path):
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed: pip install -e '.[fuzz]' (replay above still ran every corpus)")
    result = subprocess.run(
        [sys.executable, str(REPO / "fuzz" / "run.py"), target, f"--runs={SHORT_RUNS}", "--seconds=60",
         f"--scratch={tmp_path}", "-seed=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    output = result.stdout + result.stderr
    artifacts = [path.name for path in tmp_path.iterdir() if not re.fullmatch(r"[0-9a-f]{40}", path.name)]
    assert result.returncode == 0 and not artifacts, output[-4000:]
    assert re.search(rf"Done {SHORT_RUNS} runs", output), output[-4000:]
