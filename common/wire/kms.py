"""The KMS operations the protocol carries (an allow-list) and the shapes of their requests and responses.

A request carries exactly the JSON the KMS API takes (AWS JSON 1.1): member names as in the API reference,
blobs as standard base64 strings with padding. Each :class:`Operation` converts between that JSON and the
Python form boto3 takes and returns (blobs as ``bytes``), checking every member on the way in:

- ``decode_request(json) -> params`` (parent side; :class:`~nitrokit.wire.errors.InvalidRequestError` names
  the member that is missing, unknown, of the wrong type or out of range);
- ``encode_request(params) -> json`` (client side; a :class:`~nitrokit.errors.UsageError` for bad params);
- ``encode_response(result) -> json`` (parent side, from a boto3 result; ``ResponseMetadata`` and members
  this module does not know are dropped);
- ``decode_response(json) -> result`` (client side; unknown members are ignored, nulls count as absent).

Only the operations in :data:`OPERATIONS` cross the parent. To add one (Decrypt, GenerateDataKey...), describe
its request and response with the shapes below and add it to :data:`OPERATIONS`.

For the client, :func:`generate_random_request` and :func:`parse_generate_random_response` build and read
GenerateRandom messages without touching JSON.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nitrokit.errors import UsageError
from nitrokit.kms_api import (
    GENERATE_RANDOM_MAX_BYTES,
    GENERATE_RANDOM_MIN_BYTES,
    KEY_ENCRYPTION_ALGORITHMS,
    MAX_ATTESTATION_DOCUMENT_BYTES,
    MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES,
    MAX_CUSTOM_KEY_STORE_ID_CHARS,
    MAX_PLAINTEXT_BYTES,
    MIN_CUSTOM_KEY_STORE_ID_CHARS,
    RSAES_OAEP_SHA_256,
)
from nitrokit.text import clip
from nitrokit.wire.errors import InvalidRequestError, InvalidResponseError

__all__ = [
    "GENERATE_RANDOM",
    "MAX_ATTESTATION_DOCUMENT_BYTES",
    "OPERATIONS",
    "RSAES_OAEP_SHA_256",
    "Blob",
    "Enum",
    "GenerateRandomResult",
    "Integer",
    "Operation",
    "String",
    "Structure",
    "generate_random_request",
    "parse_generate_random_response",
]

# RSAES_OAEP_SHA_256 and MAX_ATTESTATION_DOCUMENT_BYTES are nitrokit.kms_api's, re-exported here.


class _ShapeError(Exception):
    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")


class _Shape:
    """One member's type and limits; ``from_json`` and ``to_json`` raise ``_ShapeError`` naming the member."""

    def from_json(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def to_json(self, value: Any, path: str) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Integer(_Shape):
    minimum: int
    maximum: int

    def from_json(self, value: Any, path: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _ShapeError(path, "must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise _ShapeError(path, f"must be from {self.minimum} to {self.maximum}")
        return value

    to_json = from_json


@dataclass(frozen=True)
class String(_Shape):
    min_length: int
    max_length: int

    def from_json(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _ShapeError(path, "must be a string")
        if not self.min_length <= len(value) <= self.max_length:
            raise _ShapeError(path, f"must be {self.min_length} to {self.max_length} characters long")
        return value

    to_json = from_json


@dataclass(frozen=True)
class Enum(_Shape):
    values: tuple[str, ...]

    def from_json(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise _ShapeError(path, f"must be one of {', '.join(self.values)}")
        return value

    to_json = from_json


@dataclass(frozen=True)
class Blob(_Shape):
    """Binary data: a base64 string in JSON, ``bytes`` in Python."""

    min_length: int
    max_length: int

    def from_json(self, value: Any, path: str) -> bytes:
        if not isinstance(value, str):
            raise _ShapeError(path, "must be a base64 string")
        # Refuse from the text's length, before decoding, what could not fit.
        if len(value) > 4 * ((self.max_length + 2) // 3):
            raise _ShapeError(path, f"must be at most {self.max_length} bytes")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _ShapeError(path, "is not valid base64") from None
        return self._check(data, path)

    def to_json(self, value: Any, path: str) -> str:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise _ShapeError(path, "must be bytes")
        return base64.b64encode(self._check(bytes(value), path)).decode("ascii")

    def _check(self, data: bytes, path: str) -> bytes:
        if not self.min_length <= len(data) <= self.max_length:
            raise _ShapeError(path, f"must be {self.min_length} to {self.max_length} bytes long")
        return data


@dataclass(frozen=True)
class Structure(_Shape):
    members: Mapping[str, _Shape]
    required: frozenset[str] = frozenset()

    def from_json(self, value: Any, path: str, *, strict: bool = True) -> dict[str, Any]:
        return self._convert(value, path, strict=strict, to_json=False)

    def to_json(self, value: Any, path: str, *, strict: bool = True) -> dict[str, Any]:
        return self._convert(value, path, strict=strict, to_json=True)

    def _convert(self, value: Any, path: str, *, strict: bool, to_json: bool) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _ShapeError(path or "the request", "must be an object")
        out: dict[str, Any] = {}
        for name, member in value.items():
            shape = self.members.get(name) if isinstance(name, str) else None
            where = f"{path}.{name}" if path else str(name)
            if shape is None:
                if strict:
                    raise _ShapeError(clip(where), "is not a known member")
                continue
            if member is None:
                if strict:
                    raise _ShapeError(where, "must not be null")
                continue
            if isinstance(shape, Structure):
                out[name] = shape._convert(member, where, strict=strict, to_json=to_json)
            else:
                out[name] = shape.to_json(member, where) if to_json else shape.from_json(member, where)
        missing = sorted(self.required - out.keys())
        if missing:
            raise _ShapeError(f"{path}.{missing[0]}" if path else missing[0], "is required")
        return out


@dataclass(frozen=True)
class Operation:
    """One KMS operation the protocol allows, with the shapes of its request and response."""

    name: str
    request: Structure
    response: Structure

    def decode_request(self, request: Any) -> dict[str, Any]:
        """The boto3 parameters for a request's KMS JSON; every member checked (unknown members refused)."""
        try:
            return self.request.from_json(request, "")
        except _ShapeError as exc:
            raise InvalidRequestError(f"{self.name}: {exc}") from None

    def encode_request(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The KMS JSON for boto3-style ``params`` (blobs as bytes), checked as :meth:`decode_request` would."""
        try:
            return self.request.to_json(params, "")
        except _ShapeError as exc:
            raise UsageError(f"{self.name}: {exc}") from None

    def encode_response(self, result: Mapping[str, Any]) -> dict[str, Any]:
        """The KMS JSON for a boto3 result; unknown members (``ResponseMetadata``...) dropped, the rest checked."""
        try:
            return self.response.to_json(result, "", strict=False)
        except _ShapeError as exc:
            raise InvalidResponseError(f"{self.name} response: {exc}") from None

    def decode_response(self, response: Any) -> dict[str, Any]:
        """The Python form (blobs as bytes) of a response's KMS JSON; unknown members ignored."""
        try:
            return self.response.from_json(response, "", strict=False)
        except _ShapeError as exc:
            raise InvalidResponseError(f"{self.name} response: {exc}") from None


_RECIPIENT = Structure(
    members={
        "AttestationDocument": Blob(1, MAX_ATTESTATION_DOCUMENT_BYTES),
        "KeyEncryptionAlgorithm": Enum(KEY_ENCRYPTION_ALGORITHMS),
    },
    required=frozenset({"AttestationDocument", "KeyEncryptionAlgorithm"}),
)

GENERATE_RANDOM = Operation(
    name="GenerateRandom",
    request=Structure(
        members={
            "NumberOfBytes": Integer(GENERATE_RANDOM_MIN_BYTES, GENERATE_RANDOM_MAX_BYTES),
            "CustomKeyStoreId": String(MIN_CUSTOM_KEY_STORE_ID_CHARS, MAX_CUSTOM_KEY_STORE_ID_CHARS),
            "Recipient": _RECIPIENT,
        },
        # Optional in the KMS model, but KMS refuses a request without it; refusing here costs no KMS call.
        required=frozenset({"NumberOfBytes"}),
    ),
    response=Structure(members={"Plaintext": Blob(1, MAX_PLAINTEXT_BYTES),
                                "CiphertextForRecipient": Blob(1, MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES)}),
)

#: The allow-list: operation name -> :class:`Operation`.
OPERATIONS: Mapping[str, Operation] = {GENERATE_RANDOM.name: GENERATE_RANDOM}



# -- GenerateRandom, for clients --------------------------------------------------------------------------------


def generate_random_request(
    number_of_bytes: int, *, attestation_document: bytes | None = None, custom_key_store_id: str | None = None,
) -> dict[str, Any]:
    """The KMS JSON of a GenerateRandom request; with ``attestation_document``, a Recipient (RSAES_OAEP_SHA_256)."""
    params: dict[str, Any] = {"NumberOfBytes": number_of_bytes}
    if custom_key_store_id is not None:
        params["CustomKeyStoreId"] = custom_key_store_id
    if attestation_document is not None:
        params["Recipient"] = {"AttestationDocument": attestation_document,
                               "KeyEncryptionAlgorithm": RSAES_OAEP_SHA_256}
    return GENERATE_RANDOM.encode_request(params)


@dataclass(frozen=True)
class GenerateRandomResult:
    """A GenerateRandom answer: ``ciphertext_for_recipient`` (CMS) when a Recipient was sent, else ``plaintext``.

    Neither value appears in ``repr()``. Checking which one is present is the caller's job: an enclave must
    refuse any answer that carries ``plaintext``.
    """

    plaintext: bytes | None = field(default=None, repr=False)
    ciphertext_for_recipient: bytes | None = field(default=None, repr=False)


def parse_generate_random_response(response: Any) -> GenerateRandomResult:
    """Read a GenerateRandom response's KMS JSON (as returned by :meth:`WireClient.call`)."""
    result = GENERATE_RANDOM.decode_response(response)
    return GenerateRandomResult(plaintext=result.get("Plaintext"),
                                ciphertext_for_recipient=result.get("CiphertextForRecipient"))
