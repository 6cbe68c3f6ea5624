"""Strict parsing of the bytes an NSM returns into an :class:`UnverifiedDocument`.

The COSE_Sign1 framing (one item, tag 18 or none, the ES384 protected header, a 96-byte signature) is checked
by :mod:`nitrokit.attestation._cose`, the COSE code EIF signatures share; this module checks every payload
field's type and size (docs/attestation.md). The payload uses no CBOR tag. Messages show decoded values only
through :func:`nitrokit.cbor.shown` (bounded, never raising).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from nitrokit.attestation._cose import ES384, CoseError, decode_item, decode_sign1
from nitrokit.attestation.errors import AttestationInputTooLargeError, MalformedDocumentError
from nitrokit.attestation.models import UnverifiedDocument, build
from nitrokit.cbor import kind, shown

# A real document is about 4.4 KB and the NSM's response buffer is 12 KiB; 32 KiB leaves room for
# 1024-byte optional fields without letting anyone feed us megabytes.
MAX_DOCUMENT_BYTES = 32 * 1024
MAX_CBOR_DEPTH = 8
# The NSM's own limit on public_key, user_data and nonce (its simulated twin takes this value).
MAX_OPTIONAL_FIELD_BYTES = 1024
MAX_MODULE_ID_CHARS = 256
MAX_CERTIFICATE_BYTES = 4096
MAX_CABUNDLE_ENTRIES = 8
# The PCR facts every part of nitrokit uses (NSM client and simulator, policies, KMS conditions, EIF, CLI):
# 32 registers; the format allows SHA-256/384/512 values; Nitro's are SHA-384, 48 bytes.
PCR_COUNT = 32
PCR_LENGTHS = frozenset({32, 48, 64})
PCR_BYTES = 48
#: "32, 48 or 64", for messages.
PCR_LENGTHS_TEXT = ", ".join(map(str, sorted(PCR_LENGTHS)[:-1])) + f" or {max(PCR_LENGTHS)}"
REQUIRED_FIELDS = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
OPTIONAL_FIELDS = ("public_key", "user_data", "nonce")
EXPECTED_DIGEST = "SHA384"


def parse_document(data: bytes) -> UnverifiedDocument:
    """Parse ``data`` (a tagged or untagged COSE_Sign1) strictly, WITHOUT verifying it.

    Raises :class:`MalformedDocumentError` (:class:`AttestationInputTooLargeError` over
    :data:`MAX_DOCUMENT_BYTES`). Nothing in the result is trustworthy: see :class:`UnverifiedDocument`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedDocumentError(f"expected bytes, got {type(data).__name__}", field="document")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise AttestationInputTooLargeError("attestation document", len(data), MAX_DOCUMENT_BYTES)
    data = bytes(data)
    if not data:
        raise MalformedDocumentError("empty input", field="document")

    try:
        sign1 = decode_sign1(data, algorithms=(ES384,), max_depth=MAX_CBOR_DEPTH)
        fields = decode_item(sign1.payload, field="payload", max_depth=MAX_CBOR_DEPTH)
    except CoseError as exc:
        raise MalformedDocumentError(exc.message, field=exc.field) from None
    if not isinstance(fields, Mapping):
        raise MalformedDocumentError(f"expected a map, got {kind(fields)}", field="payload")
    return _build_document(fields, tagged=sign1.tagged, protected=sign1.protected, payload=sign1.payload,
                           signature=sign1.signature, encoded=data)


def _build_document(fields: Mapping[Any, Any], *, tagged: bool, protected: bytes, payload: bytes,
                    signature: bytes, encoded: bytes) -> UnverifiedDocument:
    non_text = [key for key in fields if not isinstance(key, str)]
    if non_text:
        raise MalformedDocumentError(f"non-text key {shown(non_text[0])}", field="payload")
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise MalformedDocumentError("required field is missing", field=name)
        if fields[name] is None:
            raise MalformedDocumentError("required field is null", field=name)

    unknown = {key: value for key, value in fields.items() if key not in REQUIRED_FIELDS + OPTIONAL_FIELDS}
    return build(UnverifiedDocument, dict(
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
        encoded=encoded,
    ))


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
        raise MalformedDocumentError(f"{shown(value)}, expected {EXPECTED_DIGEST!r}", field="digest")
    return value


def _timestamp(value: object) -> int:
    # bool is an int subclass in Python, but CBOR true/false is not an unsigned integer.
    if type(value) is not int:
        raise MalformedDocumentError(f"expected an unsigned integer, got {kind(value)}", field="timestamp")
    if value <= 0 or value >= 253402300800000:  # 10000-01-01T00:00Z: issued_at must fit in a datetime
        raise MalformedDocumentError(f"{shown(value)} is out of range (milliseconds since the epoch)",
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
            raise MalformedDocumentError(f"index {shown(index)} is not an unsigned integer", field="pcrs")
        if not 0 <= index < PCR_COUNT:
            raise MalformedDocumentError(f"index {shown(index)} is outside 0..{PCR_COUNT - 1}", field="pcrs")
        if not isinstance(digest, bytes):
            raise MalformedDocumentError(f"expected a byte string, got {kind(digest)}", field=f"pcrs[{index}]")
        if len(digest) not in PCR_LENGTHS:
            raise MalformedDocumentError(f"{len(digest)} bytes, expected {PCR_LENGTHS_TEXT}", field=f"pcrs[{index}]")
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


