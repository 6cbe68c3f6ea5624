"""Regression tests for the hostile review's verification findings (issue 12, items 1, 3-6, 8 and 9).

Each test names the way in it closes: forged fields on a parsed document, the leaf's notBefore without the
clock skew, COSE headers that only decode like the real one, bignums that crash messages, value sharing that
expands without bound, size errors outside the domain's family, unpinned verification by default.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import cbor2
import pytest
from botocore.exceptions import ClientError

from nitrokit.attestation import (
    AttestationError,
    AttestationInputTooLargeError,
    CertificateValidityError,
    DocumentTimeError,
    MalformedDocumentError,
    Policy,
    PolicyError,
    UnverifiedDocument,
    VerifiedAttestation,
    VerifiedDocument,
    Verifier,
    parse_document,
)
from nitrokit.attestation._cose import PROTECTED_ES384, encode_sign1
from nitrokit.cms import CmsError, CmsInputTooLargeError, encrypt_for_recipient, parse_enveloped_data
from nitrokit.errors import InputTooLargeError, UsageError
from nitrokit.kms import KmsSimConfig, SimulatedKms
from nitrokit.testing import build_document, fixture_pki
from nitrokit.testing.documents import build_payload, sign_payload
from nitrokit.wire import FrameTooLargeError, ProtocolError, WireError, frame_length
from tests.cli_helpers import run_cli
from tests.conftest import vector_files
from tests.pki_helpers import T0, der
from tests.test_kms_support import recipient, rsa_key

ANY_IMAGE = Policy.any_enclave_image()
HUGE = 1 << 15000  # a CBOR bignum (tag 2) of 4516 digits: str() of it raises ValueError


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier(root=fixture_pki().root)


def _signed(leaf_not_before: Any = T0, *, protected: bytes = PROTECTED_ES384, **changes: Any) -> bytes:
    """A fixture document at T0, signed properly, with payload fields changed (or added) as given."""
    leaf, key = fixture_pki().issue_leaf(not_before=leaf_not_before)
    payload = build_payload(timestamp=T0, certificate=der(leaf), cabundle=fixture_pki().cabundle, nonce=b"real")
    payload.update(changes)
    return sign_payload(payload, key, protected=protected)


# --- item 1: every verified field comes from the signed bytes ---------------------------------------------

def test_fields_changed_on_a_parsed_document_do_not_reach_the_policy(verifier: Verifier) -> None:
    parsed = parse_document(_signed())
    with pytest.raises(TypeError):
        dataclasses.replace(parsed, nonce=b"forged")  # type: ignore[type-var]
    with pytest.raises(AttributeError, match="read-only"):
        parsed.nonce = b"forged"
    # Going around the guard: the verifier never reads the object's fields, it parses the signed bytes again.
    object.__setattr__(parsed, "nonce", b"forged")
    object.__setattr__(parsed, "pcrs", {0: b"\xee" * 48})
    with pytest.raises(PolicyError, match="nonce"):
        verifier.verify(parsed, at=T0, policy=Policy.any_enclave_image(nonce=b"forged"))
    with pytest.raises(PolicyError, match=r"pcrs\[0\]"):
        verifier.verify(parsed, at=T0, policy=Policy(pcrs={0: b"\xee" * 48}))
    result = verifier.verify(parsed, at=T0, policy=Policy.any_enclave_image(nonce=b"real"))
    assert result.document.nonce == b"real" and result.document.pcrs[0] == b"\x01" * 48


def test_documents_are_made_only_by_the_parser_and_the_verifier(verifier: Verifier) -> None:
    data = _signed()
    parsed = parse_document(data)
    assert type(parsed) is UnverifiedDocument and parsed.encoded == data
    for cls in (UnverifiedDocument, VerifiedDocument):
        with pytest.raises(UsageError, match="not by hand"):
            cls(module_id="i-forged")
    with pytest.raises(TypeError):
        copy.copy(parsed)
    result = verifier.verify(data, at=T0, policy=ANY_IMAGE)
    assert type(result) is VerifiedAttestation and type(result.document) is VerifiedDocument
    assert result.document.encoded == data and result.document.nonce == b"real"


# --- item 3: the same skew for the document timestamp and the leaf's notBefore -----------------------------

def test_a_verifier_30_seconds_behind_accepts_a_just_issued_leaf(verifier: Verifier) -> None:
    data = _signed(T0)  # the leaf is valid from T0, the document is from T0
    result = verifier.verify(data, at=T0 - timedelta(seconds=30), policy=ANY_IMAGE)
    assert result.verified_at == T0 - timedelta(seconds=30)
    # Past the skew both are refused, the document's time first.
    with pytest.raises(DocumentTimeError, match="later than the verification time"):
        verifier.verify(data, at=T0 - timedelta(minutes=6), policy=ANY_IMAGE)
    no_skew = Verifier(root=fixture_pki().root, future_skew=timedelta(0))
    with pytest.raises(DocumentTimeError):
        no_skew.verify(data, at=T0 - timedelta(seconds=30), policy=ANY_IMAGE)


def test_a_leaf_not_yet_valid_beyond_the_skew_is_still_refused(verifier: Verifier) -> None:
    with pytest.raises(CertificateValidityError, match="not valid before"):
        verifier.verify(_signed(T0 + timedelta(minutes=6)), at=T0, policy=ANY_IMAGE)


def test_the_timestamp_must_lie_within_the_signing_certificates_validity(verifier: Verifier) -> None:
    before_leaf = _signed(T0 + timedelta(minutes=1))  # signed by a leaf issued a minute after the timestamp
    with pytest.raises(DocumentTimeError, match="outside the signing certificate's validity") as info:
        verifier.verify(before_leaf, at=T0 + timedelta(minutes=2), policy=ANY_IMAGE)
    assert info.value.field == "timestamp"
    old_leaf = _signed(T0 - timedelta(hours=3, minutes=1))  # expired a minute before the timestamp
    with pytest.raises(AttestationError):
        verifier.verify(old_leaf, at=T0, policy=ANY_IMAGE)


# --- item 4: the protected header is exactly a1 01 38 22 ---------------------------------------------------

LOOK_ALIKE_HEADERS = {
    "true label": cbor2.dumps({True: -35}),
    "float label": cbor2.dumps({1.0: -35}),
    "bignum algorithm": b"\xa1\x01" + cbor2.dumps(cbor2.CBORTag(3, b"\x22")),
    "long-form algorithm": b"\xa1\x01\x39\x00\x22",
    "long-form label": b"\xa1\x18\x01\x38\x22",
    "indefinite map": b"\xbf\x01\x38\x22\xff",
    "ES256 in a document": b"\xa1\x01\x26",
}


@pytest.mark.parametrize("header", LOOK_ALIKE_HEADERS.values(), ids=LOOK_ALIKE_HEADERS.keys())
def test_a_header_that_only_decodes_like_es384_is_refused(header: bytes, verifier: Verifier) -> None:
    data = _signed(protected=header)  # validly signed over these header bytes
    with pytest.raises(MalformedDocumentError) as info:
        verifier.verify(data, at=T0, policy=ANY_IMAGE)
    assert info.value.field == "protected header"
    assert "a1013822" in str(info.value)


@pytest.mark.parametrize("vector", vector_files("nitro-attestation", "*.cbor"))
def test_real_documents_carry_exactly_the_canonical_header(vector: Path) -> None:
    assert parse_document(vector.read_bytes()).protected == bytes.fromhex("a1013822")


# --- item 5: bignums never reach message formatting -------------------------------------------------------

def _unsigned(payload: dict[Any, Any], *, protected: bytes = PROTECTED_ES384) -> bytes:
    return encode_sign1(protected=protected, payload=cbor2.dumps(payload), signature=b"\x00" * 96)


def _payload(**changes: Any) -> dict[Any, Any]:
    leaf, _ = fixture_pki().issue_leaf(not_before=T0)
    payload: dict[Any, Any] = build_payload(timestamp=T0, certificate=der(leaf), cabundle=fixture_pki().cabundle)
    payload.update(changes)
    return payload


BIGNUM_PLACES = {
    "timestamp": lambda: _unsigned(_payload(timestamp=HUGE)),
    "pcr index": lambda: _unsigned(_payload(pcrs={HUGE: b"\x01" * 48})),
    "payload key": lambda: _unsigned({**_payload(), HUGE: 1}),
    "header label": lambda: _unsigned(_payload(), protected=cbor2.dumps({1: -35, HUGE: 1})),
    "header algorithm": lambda: _unsigned(_payload(), protected=cbor2.dumps({1: HUGE})),
}


@pytest.mark.parametrize("place", BIGNUM_PLACES)
def test_a_huge_bignum_is_a_typed_refusal(place: str, verifier: Verifier) -> None:
    data = BIGNUM_PLACES[place]()
    with pytest.raises(MalformedDocumentError, match="tag 2"):
        verifier.verify(data, at=T0, policy=ANY_IMAGE)


def test_nitrokit_verify_and_inspect_refuse_a_bignum_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bignum.cbor"
    path.write_bytes(BIGNUM_PLACES["timestamp"]())
    verify = run_cli("verify", str(path), "--root", "fixture", "--json")
    assert verify.returncode == 1 and b"Traceback" not in verify.stderr
    assert json.loads(verify.stdout)["step"] == "parse"
    inspect = run_cli("inspect", str(path))
    assert inspect.returncode != 0 and b"Traceback" not in inspect.stderr
    assert b"tag 2" in inspect.stdout + inspect.stderr


@pytest.fixture(scope="module")
def kms_client() -> Iterator[Any]:
    with SimulatedKms(KmsSimConfig()) as simulator:
        yield simulator.client()


def test_the_simulated_kms_answers_a_bignum_document_with_a_validation_exception(kms_client: Any) -> None:
    with pytest.raises(ClientError) as info:
        kms_client.generate_random(NumberOfBytes=8, Recipient=recipient(BIGNUM_PLACES["timestamp"]()))
    error = info.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ValidationException", 400)
    assert "tag 2" in error["Error"]["Message"]


def test_eif_signature_section_messages_are_bounded_and_never_raise() -> None:
    # The EIF PCR0 signature shares the strict decoder; its messages show keys through nitrokit.cbor.shown.
    from nitrokit.eif._signature import parse_signature_section
    from nitrokit.eif.errors import EifSignatureError

    with pytest.raises(EifSignatureError) as info:
        parse_signature_section(cbor2.dumps([{"k" * 5000 + str(i): 1 for i in range(50)}]))
    assert "entry keys" in str(info.value) and len(str(info.value)) < 400
    with pytest.raises(EifSignatureError, match="CBOR tag 2"):
        parse_signature_section(cbor2.dumps([{HUGE: 1}]))


# --- item 6: value sharing never decodes; nothing prints untrusted structure unbounded -------------------

def _shared_field() -> bytes:
    # References to one 64-entry array of 64-entry arrays, 64 times: a few KB that expand to 64**3 byte
    # strings when printed. (The review's 7 KB document reached 600 MB.)
    inner = [b"\x00" * 32] * 64
    leaf, key = fixture_pki().issue_leaf(not_before=T0)
    payload = build_payload(timestamp=T0, certificate=der(leaf), cabundle=fixture_pki().cabundle)
    payload["vendor"] = [[inner] * 64] * 64
    return sign_payload(cbor2.dumps(payload, value_sharing=True), key)


def test_value_sharing_in_an_unknown_field_is_refused(verifier: Verifier, tmp_path: Path) -> None:
    data = _shared_field()
    assert len(data) < 8192
    with pytest.raises(MalformedDocumentError, match="tag 28") as info:
        parse_document(data)
    assert info.value.field == "payload"
    path = tmp_path / "shared.cbor"
    path.write_bytes(data)
    for command in (["inspect", str(path)], ["inspect", str(path), "--json"],
                    ["verify", str(path), "--root", "fixture", "--json"]):
        result = run_cli(*command, timeout=30)
        assert result.returncode != 0 and len(result.stdout) < 4096, command
        assert b"tag 28" in result.stdout + result.stderr


# --- item 8: one except clause per domain catches its size errors too ------------------------------------

def test_an_oversized_document_is_an_attestation_error(verifier: Verifier) -> None:
    with pytest.raises(AttestationError) as info:
        verifier.verify(b"\x84" + b"\x00" * 40000, at=T0, policy=ANY_IMAGE)
    error = info.value
    assert isinstance(error, AttestationInputTooLargeError) and isinstance(error, MalformedDocumentError)
    assert isinstance(error, InputTooLargeError)  # still caught where every size cap is handled alike
    assert (error.size, error.limit, error.field, error.step) == (40001, 32768, "document", "parse")
    assert str(error) == "parse: attestation document is 40001 bytes, over the limit of 32768 bytes"


def test_an_oversized_envelope_or_plaintext_is_a_cms_error() -> None:
    with pytest.raises(CmsError) as info:
        parse_enveloped_data(b"\x30" * 70000)
    assert isinstance(info.value, CmsInputTooLargeError) and isinstance(info.value, InputTooLargeError)
    with pytest.raises(CmsInputTooLargeError):
        encrypt_for_recipient(b"x" * 70000, rsa_key().public_key())


def test_an_oversized_frame_is_a_protocol_error_and_a_size_error() -> None:
    with pytest.raises(ProtocolError) as info:
        frame_length((1 << 31).to_bytes(4, "big"))
    error = info.value
    assert isinstance(error, FrameTooLargeError) and isinstance(error, WireError)
    assert isinstance(error, InputTooLargeError) and error.size == 1 << 31 and error.code == "FrameTooLarge"


# --- item 9 (verification half): unpinned verification is a visible choice -------------------------------

def test_verify_requires_a_policy(verifier: Verifier) -> None:
    data = _signed()
    with pytest.raises(TypeError, match="policy"):
        verifier.verify(data, at=T0)  # type: ignore[call-arg]
    assert not ANY_IMAGE.pins_image and Policy(pcrs={0: b"\x01" * 48}).pins_image
    assert Policy.any_enclave_image(allow_debug=True, nonce=b"n") == Policy(allow_debug=True, nonce=b"n")


def test_nitrokit_verify_warns_on_stderr_when_no_pcr_is_pinned(tmp_path: Path) -> None:
    path = tmp_path / "doc.cbor"
    path.write_bytes(build_document(at=T0))
    base = ["verify", str(path), "--root", "fixture", "--at", T0.isoformat(), "--json"]
    unpinned = run_cli(*base)
    assert unpinned.returncode == 0, unpinned.stderr
    assert b"warning: no --pcr given: any enclave image is accepted" in unpinned.stderr
    assert json.loads(unpinned.stdout)["valid"] is True  # stdout stays one JSON object
    pinned = run_cli(*base, "--pcr", "0=" + "01" * 48)
    assert pinned.returncode == 0, pinned.stderr
    assert b"warning" not in pinned.stderr
