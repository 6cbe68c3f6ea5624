"""The strict attestation parser: every structural rule, each with its own error."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from nitrokit.attestation import MalformedDocumentError, parse_document
from nitrokit.attestation._cose import PROTECTED_ES384, encode_sign1
from nitrokit.attestation._parse import MAX_DOCUMENT_BYTES
from nitrokit.errors import InputTooLargeError
from nitrokit.testing.documents import DEFAULT_MODULE_ID, build_payload
from nitrokit.testing.pki import fixture_pki
from tests.conftest import vector_files
from tests.pki_helpers import T0, der

SIG = b"\x01" * 96


@pytest.fixture(scope="module")
def leaf_der() -> bytes:
    leaf, _ = fixture_pki().issue_leaf(not_before=T0)
    return der(leaf)


def payload(leaf_der: bytes, **changes: Any) -> dict[str, Any]:
    fields = build_payload(timestamp=T0, certificate=leaf_der, cabundle=fixture_pki().cabundle)
    for key, value in changes.items():
        if value is _DROP:
            fields.pop(key)
        else:
            fields[key] = value
    return fields


_DROP = object()


def sign1(payload_bytes: bytes, *, protected: bytes = PROTECTED_ES384, signature: bytes = SIG) -> bytes:
    return encode_sign1(protected=protected, payload=payload_bytes, signature=signature)


def parse_error(data: bytes) -> MalformedDocumentError:
    with pytest.raises(MalformedDocumentError) as info:
        parse_document(data)
    return info.value


def test_a_well_formed_document_parses(leaf_der: bytes) -> None:
    doc = parse_document(sign1(cbor2.dumps(payload(leaf_der, nonce=b"n" * 8))))
    assert doc.module_id == DEFAULT_MODULE_ID
    assert doc.digest == "SHA384"
    assert doc.timestamp == int(T0.timestamp() * 1000)
    assert doc.issued_at == T0
    assert sorted(doc.pcrs) == list(range(16))
    assert doc.nonce == b"n" * 8
    assert doc.user_data is None and doc.public_key is None
    assert not doc.tagged and not doc.is_debug


def test_tagged_and_untagged_are_both_accepted(leaf_der: bytes) -> None:
    body = cbor2.dumps(payload(leaf_der))
    tagged = cbor2.dumps(cbor2.CBORTag(18, [PROTECTED_ES384, {}, body, SIG]))
    assert parse_document(tagged).tagged
    assert not parse_document(sign1(body)).tagged


@pytest.mark.parametrize("vector", vector_files("nitro-attestation", "*.cbor"))
def test_every_real_document_parses(vector: Any) -> None:
    doc = parse_document(vector.read_bytes())
    assert doc.digest == "SHA384"
    assert len(doc.cabundle) == 4
    assert len(doc.pcrs) == 16
    assert all(len(value) == 48 for value in doc.pcrs.values())
    assert not doc.unknown_fields


# --- indefinite-length encodings, written by hand -------------------------------------------------------

def _indefinite_map(items: dict[str, Any]) -> bytes:
    return b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in items.items()) + b"\xff"


def test_indefinite_length_payload_map_and_arrays_are_accepted(leaf_der: bytes) -> None:
    """Inside the signed payload, any valid CBOR length form is read; the COSE framing around it has one form
    (test_the_cose_framing_has_one_encoding)."""
    fields = payload(leaf_der)
    cabundle = b"\x9f" + b"".join(cbor2.dumps(entry) for entry in fields["cabundle"]) + b"\xff"
    pcrs = b"\xbf" + b"".join(cbor2.dumps(i) + cbor2.dumps(v) for i, v in fields["pcrs"].items()) + b"\xff"
    rest = {k: v for k, v in fields.items() if k not in ("cabundle", "pcrs")}
    body = b"\xbf" + b"".join(cbor2.dumps(k) + cbor2.dumps(v) for k, v in rest.items())
    body += cbor2.dumps("pcrs") + pcrs + cbor2.dumps("cabundle") + cabundle + b"\xff"
    outer = b"\x84" + cbor2.dumps(PROTECTED_ES384) + b"\xa0" + cbor2.dumps(body) + cbor2.dumps(SIG)
    doc = parse_document(outer)
    assert doc.cabundle == tuple(fields["cabundle"])
    assert dict(doc.pcrs) == fields["pcrs"]


def _framings(leaf_der: bytes) -> dict[str, bytes]:
    body = cbor2.dumps(payload(leaf_der))
    items = cbor2.dumps(PROTECTED_ES384) + b"\xa0" + cbor2.dumps(body) + cbor2.dumps(SIG)
    chunked = b"\x5f" + cbor2.dumps(body[:100]) + cbor2.dumps(body[100:]) + b"\xff"
    return {
        "long-form tag 18": b"\xd9\x00\x12\x84" + items,
        "eight-byte tag 18": b"\xdb" + (18).to_bytes(8, "big") + b"\x84" + items,
        "indefinite array": b"\x9f" + items + b"\xff",
        "long-form header length": b"\x84\x59\x00\x04" + PROTECTED_ES384 + b"\xa0" + cbor2.dumps(body)
                                   + cbor2.dumps(SIG),
        "chunked payload": b"\x84" + cbor2.dumps(PROTECTED_ES384) + b"\xa0" + chunked + cbor2.dumps(SIG),
        "indefinite unprotected map": b"\x84" + cbor2.dumps(PROTECTED_ES384) + b"\xbf\xff" + cbor2.dumps(body)
                                      + cbor2.dumps(SIG),
    }


@pytest.mark.parametrize("framing", ["long-form tag 18", "eight-byte tag 18", "indefinite array",
                                     "long-form header length", "chunked payload", "indefinite unprotected map"])
def test_the_cose_framing_has_one_encoding(framing: str, leaf_der: bytes) -> None:
    """The same signed content in another CBOR form is refused (found by the hostile re-test: it verified, with
    different document bytes, so a replay cache keyed on them could be sidestepped)."""
    parse_document(b"\x84" + cbor2.dumps(PROTECTED_ES384) + b"\xa0" + cbor2.dumps(cbor2.dumps(payload(leaf_der)))
                   + cbor2.dumps(SIG))  # the one form
    assert "shortest, definite-length" in str(parse_error(_framings(leaf_der)[framing]))


# --- the COSE_Sign1 framing -----------------------------------------------------------------------------

def test_other_cbor_tag_is_rejected(leaf_der: bytes) -> None:
    data = cbor2.dumps(cbor2.CBORTag(98, [PROTECTED_ES384, {}, cbor2.dumps(payload(leaf_der)), SIG]))
    assert "tag 98" in str(parse_error(data))


@pytest.mark.parametrize("count", [0, 3, 5])
def test_wrong_element_count_is_rejected(count: int, leaf_der: bytes) -> None:
    items = [PROTECTED_ES384, {}, cbor2.dumps(payload(leaf_der)), SIG, b""][:count]
    assert f"got {count}" in str(parse_error(cbor2.dumps(items)))


def test_not_an_array_is_rejected() -> None:
    assert "COSE_Sign1" in str(parse_error(cbor2.dumps({"a": 1})))


@pytest.mark.parametrize(
    ("protected", "message"),
    [
        (cbor2.dumps({1: -7}), "algorithm -7"),           # ES256
        (cbor2.dumps({1: -36}), "algorithm -36"),         # ES512
        (cbor2.dumps({1: "ES384"}), "algorithm 'ES384'"),
        (cbor2.dumps({4: b"kid"}), "no algorithm"),
        (cbor2.dumps({}), "no algorithm"),
        (cbor2.dumps({1: -35, 4: b"kid"}), "unexpected labels"),
        (cbor2.dumps([1, -35]), "expected a map"),
        (b"", "invalid CBOR"),
    ],
)
def test_protected_header_must_be_exactly_es384(protected: bytes, message: str, leaf_der: bytes) -> None:
    error = parse_error(sign1(cbor2.dumps(payload(leaf_der)), protected=protected))
    assert error.field == "protected header"
    assert message in str(error)


def test_protected_header_as_a_map_not_bytes_is_rejected(leaf_der: bytes) -> None:
    data = cbor2.dumps([{1: -35}, {}, cbor2.dumps(payload(leaf_der)), SIG])
    assert parse_error(data).field == "protected header"


def test_unprotected_header_must_be_a_map(leaf_der: bytes) -> None:
    data = cbor2.dumps([PROTECTED_ES384, [], cbor2.dumps(payload(leaf_der)), SIG])
    assert parse_error(data).field == "unprotected header"


def test_unprotected_header_contents_are_ignored(leaf_der: bytes) -> None:
    data = cbor2.dumps([PROTECTED_ES384, {1: -7, 4: b"x"}, cbor2.dumps(payload(leaf_der)), SIG])
    assert parse_document(data).module_id


@pytest.mark.parametrize("signature", [b"\x01" * 64, b"\x01" * 97, b""])
def test_signature_must_be_96_bytes(signature: bytes, leaf_der: bytes) -> None:
    error = parse_error(sign1(cbor2.dumps(payload(leaf_der)), signature=signature))
    assert error.field == "signature" and "96" in str(error)


def test_signature_must_be_bytes(leaf_der: bytes) -> None:
    data = cbor2.dumps([PROTECTED_ES384, {}, cbor2.dumps(payload(leaf_der)), "sig"])
    assert parse_error(data).field == "signature"


def test_payload_must_be_bytes_holding_a_map(leaf_der: bytes) -> None:
    assert parse_error(cbor2.dumps([PROTECTED_ES384, {}, payload(leaf_der), SIG])).field == "payload"
    assert parse_error(sign1(cbor2.dumps([1, 2]))).field == "payload"


def test_trailing_bytes_after_the_structure_are_rejected(leaf_der: bytes) -> None:
    error = parse_error(sign1(cbor2.dumps(payload(leaf_der))) + b"\x00")
    assert "1 trailing bytes" in str(error) and error.field == "COSE_Sign1"


def test_trailing_bytes_inside_the_payload_are_rejected(leaf_der: bytes) -> None:
    error = parse_error(sign1(cbor2.dumps(payload(leaf_der)) + b"\xf6\xf6"))
    assert "2 trailing bytes" in str(error) and error.field == "payload"


def test_duplicate_payload_keys_are_rejected(leaf_der: bytes) -> None:
    fields = payload(leaf_der)
    body = cbor2.dumps(fields)
    # Append a second "digest" entry and bump the map's item count (a small definite map header 0xa9 -> 0xaa).
    assert body[0] == 0xA9
    duplicated = bytes([0xAA]) + body[1:] + cbor2.dumps("digest") + cbor2.dumps("SHA384")
    assert "Duplicate map key" in str(parse_error(sign1(duplicated)))


def test_duplicate_keys_in_an_indefinite_map_are_rejected(leaf_der: bytes) -> None:
    fields = payload(leaf_der)
    body = _indefinite_map(fields)[:-1] + cbor2.dumps("nonce") + cbor2.dumps(b"x") + b"\xff"
    assert "Duplicate" in str(parse_error(sign1(body)))


def test_truncated_cbor_is_rejected(leaf_der: bytes) -> None:
    data = sign1(cbor2.dumps(payload(leaf_der)))
    for cut in (1, 10, len(data) // 2, len(data) - 1):
        assert parse_error(data[:cut]).field == "COSE_Sign1"


def test_input_size_is_capped_before_parsing() -> None:
    with pytest.raises(InputTooLargeError):
        parse_document(b"\x84" + b"\x00" * MAX_DOCUMENT_BYTES)


def test_empty_and_non_bytes_input_are_rejected() -> None:
    assert "empty" in str(parse_error(b""))
    with pytest.raises(MalformedDocumentError):
        parse_document("not bytes")  # type: ignore[arg-type]


def test_deep_nesting_is_rejected(leaf_der: bytes) -> None:
    deep: Any = 1
    for _ in range(50):
        deep = [deep]
    error = parse_error(sign1(cbor2.dumps(payload(leaf_der, extra=deep))))
    assert error.field == "payload"


# --- payload fields -------------------------------------------------------------------------------------

FIELD_CASES: list[tuple[str, Any, str, str]] = [
    ("module_id", 7, "module_id", "expected text"),
    ("module_id", "", "module_id", "empty"),
    ("module_id", "x" * 300, "module_id", "300 characters"),
    ("digest", "SHA256", "digest", "expected 'SHA384'"),
    ("digest", b"SHA384", "digest", "expected text"),
    ("timestamp", "1700000000000", "timestamp", "unsigned integer"),
    ("timestamp", -5, "timestamp", "out of range"),
    ("timestamp", 1.5, "timestamp", "unsigned integer"),
    ("timestamp", True, "timestamp", "unsigned integer"),
    ("pcrs", [b"\x00" * 48], "pcrs", "expected a map"),
    ("pcrs", {}, "pcrs", "empty map"),
    ("pcrs", {32: b"\x00" * 48}, "pcrs", "index 32 is outside 0..31"),
    ("pcrs", {-1: b"\x00" * 48}, "pcrs", "index -1 is outside"),
    ("pcrs", {"0": b"\x00" * 48}, "pcrs", "not an unsigned integer"),
    ("pcrs", {0: b"\x00" * 20}, "pcrs[0]", "20 bytes, expected 32, 48 or 64"),
    ("pcrs", {0: "00" * 48}, "pcrs[0]", "expected a byte string"),
    ("certificate", "MII...", "certificate", "expected a byte string"),
    ("certificate", b"", "certificate", "empty"),
    ("certificate", b"\x30" * 5000, "certificate", "over 4096"),
    ("cabundle", [], "cabundle", "empty array"),
    ("cabundle", b"\x30", "cabundle", "expected an array"),
    ("cabundle", ["MII"], "cabundle[0]", "expected a byte string"),
    ("cabundle", [b"\x30"] * 9, "cabundle", "9 entries"),
    ("public_key", 5, "public_key", "byte string or null"),
    ("user_data", "text", "user_data", "byte string or null"),
    ("nonce", b"n" * 1025, "nonce", "1025 bytes, over 1024"),
    ("user_data", b"u" * 1025, "user_data", "over 1024"),
    ("public_key", b"k" * 1025, "public_key", "over 1024"),
]


@pytest.mark.parametrize(("name", "value", "field", "message"), FIELD_CASES,
                         ids=[f"{c[0]}-{c[3]}" for c in FIELD_CASES])
def test_each_bad_field_gets_its_own_error(name: str, value: Any, field: str, message: str,
                                           leaf_der: bytes) -> None:
    error = parse_error(sign1(cbor2.dumps(payload(leaf_der, **{name: value}))))
    assert error.field == field
    assert message in str(error)


@pytest.mark.parametrize("name", ["module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle"])
def test_required_fields_must_be_present_and_not_null(name: str, leaf_der: bytes) -> None:
    missing = parse_error(sign1(cbor2.dumps(payload(leaf_der, **{name: _DROP}))))
    assert missing.field == name and "missing" in str(missing)
    null = parse_error(sign1(cbor2.dumps(payload(leaf_der, **{name: None}))))
    assert null.field == name and "null" in str(null)


@pytest.mark.parametrize("name", ["public_key", "user_data", "nonce"])
def test_optional_fields_may_be_absent_or_null(name: str, leaf_der: bytes) -> None:
    assert getattr(parse_document(sign1(cbor2.dumps(payload(leaf_der, **{name: _DROP})))), name) is None
    assert getattr(parse_document(sign1(cbor2.dumps(payload(leaf_der, **{name: None})))), name) is None
    full = parse_document(sign1(cbor2.dumps(payload(leaf_der, **{name: b"v" * 1024}))))
    assert getattr(full, name) == b"v" * 1024


def test_pcr_lengths_32_48_64_are_accepted(leaf_der: bytes) -> None:
    pcrs = {0: b"\x01" * 32, 1: b"\x02" * 48, 31: b"\x03" * 64}
    assert dict(parse_document(sign1(cbor2.dumps(payload(leaf_der, pcrs=pcrs)))).pcrs) == pcrs


def test_unknown_payload_keys_are_kept_not_trusted(leaf_der: bytes) -> None:
    doc = parse_document(sign1(cbor2.dumps(payload(leaf_der, vendor_extension=b"\x01\x02", note="hi"))))
    assert dict(doc.unknown_fields) == {"vendor_extension": b"\x01\x02", "note": "hi"}


def test_non_text_payload_keys_are_rejected(leaf_der: bytes) -> None:
    fields: dict[Any, Any] = payload(leaf_der)
    fields[7] = b"x"
    assert "non-text key 7" in str(parse_error(sign1(cbor2.dumps(fields))))


def test_debug_mode_is_pcr0_all_zero(leaf_der: bytes) -> None:
    pcrs = {i: b"\x00" * 48 for i in range(16)}
    assert parse_document(sign1(cbor2.dumps(payload(leaf_der, pcrs=pcrs)))).is_debug
