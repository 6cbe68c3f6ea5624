"""Property tests: any change to what a valid document's signature covers is refused, and whatever bytes
arrive, parsing and verification only raise nitrokit's typed errors."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nitrokit.attestation import AttestationError, Policy, Verifier, parse_document
from nitrokit.attestation._cose import PROTECTED_ES384, encode_sign1
from nitrokit.testing import build_document, fixture_pki
from tests.pki_helpers import T0

DOCUMENT = build_document(at=T0, nonce=b"n", user_data=b"u")
VERIFIER = Verifier(root=fixture_pki().root)
PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ANY_IMAGE = Policy.any_enclave_image()
PARTS = parse_document(DOCUMENT)
SIGNED_PARTS = ("protected", "payload", "signature")


def _with_part(part: str, value: bytes) -> bytes:
    parts = {name: getattr(PARTS, name) for name in SIGNED_PARTS}
    return encode_sign1(**{**parts, part: value})


def test_the_valid_document_verifies_from_its_parts() -> None:
    # So the property below is not met by a verifier that refuses everything.
    for part in SIGNED_PARTS:
        assert VERIFIER.verify(_with_part(part, getattr(PARTS, part)), at=T0, policy=ANY_IMAGE).checks


@PROFILE
@given(st.sampled_from(SIGNED_PARTS), st.data())
def test_any_change_to_the_protected_header_payload_or_signature_is_refused(part: str, data: st.DataObject) -> None:
    # Random edits, not the one change ECDSA itself allows ((r, s) -> (r, n - s) signs the same bytes).
    original = getattr(PARTS, part)
    edit = data.draw(st.sampled_from(["flip", "replace", "insert", "delete", "truncate", "new"]))
    changed = bytearray(original)
    position = data.draw(st.integers(0, len(original) - 1))
    if edit == "flip":
        changed[position] ^= 1 << data.draw(st.integers(0, 7))
    elif edit == "replace":
        changed[position:position + 1] = data.draw(st.binary(min_size=1, max_size=1))
    elif edit == "insert":
        changed[position:position] = data.draw(st.binary(min_size=1, max_size=8))
    elif edit == "delete":
        del changed[position:position + data.draw(st.integers(1, 8))]
    elif edit == "truncate":
        del changed[position:]
    else:
        changed = bytearray(data.draw(st.binary(max_size=2 * len(original))))
    assume(bytes(changed) != original)
    with pytest.raises(AttestationError):
        VERIFIER.verify(_with_part(part, bytes(changed)), at=T0, policy=ANY_IMAGE)


def _verify_or_typed_error(data: bytes) -> None:
    with contextlib.suppress(AttestationError):  # size errors included (issue 12, item 8)
        VERIFIER.verify(data, at=T0, policy=Policy.any_enclave_image(allow_debug=True))


@PROFILE
@given(st.binary(max_size=2048))
def test_random_bytes_only_raise_typed_errors(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_document(data)


@PROFILE
@given(st.data())
def test_mutated_documents_only_raise_typed_errors(data: st.DataObject) -> None:
    mutated = bytearray(DOCUMENT)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = data.draw(st.integers(0, len(mutated) - 1))
        if kind == "flip":
            mutated[position] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "insert":
            mutated[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del mutated[position:position + data.draw(st.integers(1, 8))]
        else:
            del mutated[position:]
        if not mutated:
            mutated.append(0)
    _verify_or_typed_error(bytes(mutated))


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.binary(max_size=64) | st.text(max_size=16)
    | st.floats(allow_nan=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
field_names = st.sampled_from(["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key",
                               "user_data", "nonce", "extra"])


@PROFILE
@given(st.dictionaries(field_names, cbor_values, max_size=10))
def test_arbitrary_payload_maps_only_raise_typed_errors(fields: dict[str, Any]) -> None:
    data = encode_sign1(protected=PROTECTED_ES384, payload=cbor2.dumps(fields), signature=b"\x00" * 96)
    _verify_or_typed_error(data)


@PROFILE
@given(st.sampled_from(["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle", "public_key",
                        "user_data", "nonce"]), cbor_values)
def test_one_field_replaced_is_rejected_or_verified(name: str, value: Any) -> None:
    fields = cbor2.loads(parse_document(DOCUMENT).payload)
    fields[name] = value
    data = encode_sign1(protected=PROTECTED_ES384, payload=cbor2.dumps(fields), signature=b"\x00" * 96)
    try:
        VERIFIER.verify(data, at=T0, policy=ANY_IMAGE)
    except AttestationError:
        return
    raise AssertionError("a document with a zero signature verified")
