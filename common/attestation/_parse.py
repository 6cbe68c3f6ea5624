"""Strict parsing of the bytes an NSM returns into an :class:`AttestationDocument`.

cbor2 does the decoding with duplicate keys refused and a depth cap; this module checks the COSE_Sign1
framing, that nothing follows the structure, and every payload field's type and size (docs/attestation.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import cbor2

from nitrokit.attestation._cose import COSE_SIGN1_TAG, ES384, ES384_SIGNATURE_BYTES
from nitrokit.attestation.errors import MalformedDocumentError
from nitrokit.attestation.models import AttestationDocument
from nitrokit.cbor import CborError, decode_exactly, kind
from nitrokit.errors import InputTooLargeError
from nitrokit.text import clip

# A real document is about 4.4 KB and the NSM's response buffer is 12 KiB; 32 KiB leaves room for
# 1024-byte optional fields without letting anyone feed us megabytes.
MAX_DOCUMENT_BYTES = 32 * 1024
MAX_CBOR_DEPTH = 8
MAX_OPTIONAL_FIELD_BYTES = 1024
MAX_MODULE_ID_CHARS = 256
MAX_CERTIFICATE_BYTES = 4096
MAX_CABUNDLE_ENTRIES = 8
PCR_COUNT = 32
PCR_LENGTHS = frozenset({32, 48, 64})
REQUIRED_FIELDS = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
OPTIONAL_FIELDS = ("public_key", "user_data", "nonce")
EXPECTED_DIGEST = "SHA384"
_ALG_LABEL = 1


def parse_document(data: bytes) -> AttestationDocument:
    """Parse ``data`` (a tagged or untagged COSE_Sign1) strictly; raise :class:`MalformedDocumentError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedDocumentError(f"expected bytes, got {type(data).__name__}", field="document")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InputTooLargeError("attestation document", len(data), MAX_DOCUMENT_BYTES)
    data = bytes(data)
    if not data:
        raise MalformedDocumentError("empty input", field="document")

    top = _decode_exactly(data, what="COSE_Sign1")
    tagged = False
    if isinstance(top, cbor2.CBORTag):
        if top.tag != COSE_SIGN1_TAG:
            raise MalformedDocumentError(f"CBOR tag {top.tag}, expected {COSE_SIGN1_TAG} (COSE_Sign1)",
                                         field="COSE_Sign1")
        top, tagged = top.value, True
    if not isinstance(top, list | tuple):
        raise MalformedDocumentError(f"expected a 4-element array, got {kind(top)}", field="COSE_Sign1")
    if len(top) != 4:
        raise MalformedDocumentError(f"expected 4 elements, got {len(top)}", field="COSE_Sign1")
    protected, unprotected, payload, signature = top

    _check_protected_header(protected)
    if not isinstance(unprotected, Mapping):
        raise MalformedDocumentError(f"expected a map, got {kind(unprotected)}", field="unprotected header")
    if not isinstance(payload, bytes):
        raise MalformedDocumentError(f"expected a byte string, got {kind(payload)}", field="payload")
    if not isinstance(signature, bytes):
        raise MalformedDocumentError(f"expected a byte string, got {kind(signature)}", field="signature")
    if len(signature) != ES384_SIGNATURE_BYTES:
        raise MalformedDocumentError(
            f"{len(signature)} bytes, expected {ES384_SIGNATURE_BYTES} (raw r||s for P-384)", field="signature")

    fields = _decode_exactly(payload, what="payload")
    if not isinstance(fields, Mapping):
        raise MalformedDocumentError(f"expected a map, got {kind(fields)}", field="payload")
    return _build_document(fields, tagged=tagged, protected=protected, payload=payload, signature=signature)


def _decode_exactly(data: bytes, *, what: str) -> Any:
    """Decode one CBOR item that must span all of ``data``."""
    try:
        return decode_exactly(data, max_depth=MAX_CBOR_DEPTH)
    except CborError as exc:
        raise MalformedDocumentError(str(exc), field=what) from None


def _check_protected_header(protected: object) -> None:
    if not isinstance(protected, bytes):
        raise MalformedDocumentError(f"expected a byte string, got {kind(protected)}", field="protected header")
    header = _decode_exactly(protected, what="protected header")
    if not isinstance(header, Mapping):
        raise MalformedDocumentError(f"expected a map, got {kind(header)}", field="protected header")
    if _ALG_LABEL not in header:
        raise MalformedDocumentError("no algorithm (label 1)", field="protected header")
    alg = header[_ALG_LABEL]
    if type(alg) is not int or alg != ES384:
        raise MalformedDocumentError(f"algorithm {alg!r}, expected ES384 ({ES384})", field="protected header")
    extra = [label for label in header if label != _ALG_LABEL]
    if extra:
        raise MalformedDocumentError(f"unexpected labels {sorted(map(repr, extra))}", field="protected header")


def _build_document(fields: Mapping[Any, Any], *, tagged: bool, protected: bytes, payload: bytes,
                    signature: bytes) -> AttestationDocument:
    non_text = [key for key in fields if not isinstance(key, str)]
    if non_text:
        raise MalformedDocumentError(f"non-text key {non_text[0]!r}", field="payload")
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise MalformedDocumentError("required field is missing", field=name)
        if fields[name] is None:
            raise MalformedDocumentError("required field is null", field=name)

    unknown = {key: value for key, value in fields.items() if key not in REQUIRED_FIELDS + OPTIONAL_FIELDS}
    return AttestationDocument(
        module_id=_module_id(fields["module_id"]),
        digest=_digest(fields["digest"]),
        timestamp=_timestamp(fields["timestamp"]),
        pcrs=_pcrs(fields["pcrs"]),
        certificate=_der_bytes(fields["certificate"], field="certificate"),
        cabundle=_cabundle(fields["cabundle"]),
        public_key=_optional_bytes(fields.get("public_key"), field="public_key"),
        user_data=_optional_bytes(fields.get("user_data"), field="user_data"),
        nonce=_optional_bytes(fields.get("nonce"), field="nonce"),
        unknown_fields=MappingProxyType(unknown),
        tagged=tagged,
        protected=protected,
        payload=payload,
        signature=signature,
    )


def _module_id(value: object) -> str:
    if not isinstance(value, str):
        raise MalformedDocumentError(f"expected text, got {kind(value)}", field="module_id")
    if not value:
        raise MalformedDocumentError("empty", field="module_id")
    if len(value) > MAX_MODULE_ID_CHARS:
        raise MalformedDocumentError(f"{len(value)} characters, over {MAX_MODULE_ID_CHARS}", field="module_id")
    return value


def _digest(value: object) -> str:
    if not isinstance(value, str):
        raise MalformedDocumentError(f"expected text, got {kind(value)}", field="digest")
    if value != EXPECTED_DIGEST:
        raise MalformedDocumentError(f"{clip(value)!r}, expected {EXPECTED_DIGEST!r}", field="digest")
    return value


def _timestamp(value: object) -> int:
    # bool is an int subclass in Python, but CBOR true/false is not an unsigned integer.
    if type(value) is not int:
        raise MalformedDocumentError(f"expected an unsigned integer, got {kind(value)}", field="timestamp")
    if value <= 0 or value >= 253402300800000:  # 10000-01-01T00:00Z: issued_at must fit in a datetime
        raise MalformedDocumentError(f"{value} is out of range (milliseconds since the epoch)",
                                     field="timestamp")
    return value


def _pcrs(value: object) -> Mapping[int, bytes]:
    if not isinstance(value, Mapping):
        raise MalformedDocumentError(f"expected a map, got {kind(value)}", field="pcrs")
    if not value:
        raise MalformedDocumentError("empty map", field="pcrs")
    pcrs: dict[int, bytes] = {}
    for index, digest in value.items():
        if type(index) is not int:
            raise MalformedDocumentError(f"index {clip(repr(index))} is not an unsigned integer", field="pcrs")
        if not 0 <= index < PCR_COUNT:
            raise MalformedDocumentError(f"index {index} is outside 0..{PCR_COUNT - 1}", field="pcrs")
        if not isinstance(digest, bytes):
            raise MalformedDocumentError(f"expected a byte string, got {kind(digest)}", field=f"pcrs[{index}]")
        if len(digest) not in PCR_LENGTHS:
            raise MalformedDocumentError(f"{len(digest)} bytes, expected 32, 48 or 64", field=f"pcrs[{index}]")
        pcrs[index] = digest
    return MappingProxyType(dict(sorted(pcrs.items())))


def _der_bytes(value: object, *, field: str) -> bytes:
    if not isinstance(value, bytes):
        raise MalformedDocumentError(f"expected a byte string, got {kind(value)}", field=field)
    if not value:
        raise MalformedDocumentError("empty", field=field)
    if len(value) > MAX_CERTIFICATE_BYTES:
        raise MalformedDocumentError(f"{len(value)} bytes, over {MAX_CERTIFICATE_BYTES}", field=field)
    return value


def _cabundle(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list | tuple):
        raise MalformedDocumentError(f"expected an array, got {kind(value)}", field="cabundle")
    if not value:
        raise MalformedDocumentError("empty array (it must hold at least the root)", field="cabundle")
    if len(value) > MAX_CABUNDLE_ENTRIES:
        raise MalformedDocumentError(f"{len(value)} entries, over {MAX_CABUNDLE_ENTRIES}", field="cabundle")
    return tuple(_der_bytes(entry, field=f"cabundle[{i}]") for i, entry in enumerate(value))


def _optional_bytes(value: object, *, field: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise MalformedDocumentError(f"expected a byte string or null, got {kind(value)}", field=field)
    if len(value) > MAX_OPTIONAL_FIELD_BYTES:
        raise MalformedDocumentError(f"{len(value)} bytes, over {MAX_OPTIONAL_FIELD_BYTES}", field=field)
    return value


