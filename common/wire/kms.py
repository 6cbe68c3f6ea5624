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

Only the operations in :data:`OPERATIONS` cross the parent: the five that take a ``Recipient``
(:data:`GENERATE_RANDOM`, :data:`DECRYPT`, :data:`GENERATE_DATA_KEY`, :data:`GENERATE_DATA_KEY_PAIR`,
:data:`DERIVE_SHARED_SECRET`), each with the members and limits of botocore's KMS model, plus the rules between
members KMS applies before any key is touched (GenerateDataKey takes exactly one of ``NumberOfBytes`` and
``KeySpec``). Each operation names its ``plaintext_member`` (``Plaintext``, ``PrivateKeyPlaintext`` or
``SharedSecret``): the one KMS leaves null when a Recipient is sent, and that must never cross the parent.
To add an operation, describe its request and response with the shapes below and add it to :data:`OPERATIONS`.

For the client, :func:`generate_random_request` and :func:`parse_generate_random_response` build and read
GenerateRandom messages without touching JSON.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nitrokit.errors import UsageError
from nitrokit.kms_api import (
    DATA_KEY_PAIR_SPECS,
    DATA_KEY_SPEC_BYTES,
    ENCRYPTION_ALGORITHMS,
    GENERATE_RANDOM_MAX_BYTES,
    GENERATE_RANDOM_MIN_BYTES,
    KEY_AGREEMENT_ALGORITHMS,
    KEY_ENCRYPTION_ALGORITHMS,
    KEY_MATERIAL_ID_CHARS,
    KEY_ORIGINS,
    MAX_ATTESTATION_DOCUMENT_BYTES,
    MAX_CIPHERTEXT_BLOB_BYTES,
    MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES,
    MAX_CUSTOM_KEY_STORE_ID_CHARS,
    MAX_GRANT_TOKEN_CHARS,
    MAX_GRANT_TOKENS,
    MAX_KEY_ID_CHARS,
    MAX_PLAINTEXT_BYTES,
    MAX_PUBLIC_KEY_BYTES,
    MIN_CUSTOM_KEY_STORE_ID_CHARS,
    RSAES_OAEP_SHA_256,
)
from nitrokit.text import escaped
from nitrokit.wire.errors import InvalidRequestError, InvalidResponseError
from nitrokit.wire.framing import MAX_FRAME_SIZE

__all__ = [
    "DECRYPT",
    "DERIVE_SHARED_SECRET",
    "GENERATE_DATA_KEY",
    "GENERATE_DATA_KEY_PAIR",
    "GENERATE_RANDOM",
    "MAX_ATTESTATION_DOCUMENT_BYTES",
    "MAX_KMS_ANSWER_BYTES",
    "OPERATIONS",
    "RSAES_OAEP_SHA_256",
    "Blob",
    "Boolean",
    "Enum",
    "GenerateRandomResult",
    "Integer",
    "List",
    "Map",
    "Operation",
    "String",
    "Structure",
    "generate_random_request",
    "parse_generate_random_response",
    "recipient_info",
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

    def max_json_length(self) -> int:
        """The most characters a value of this shape takes in compact JSON (strings fully escaped)."""
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

    def max_json_length(self) -> int:
        return max(len(str(self.minimum)), len(str(self.maximum)))


@dataclass(frozen=True)
class String(_Shape):
    min_length: int
    max_length: int
    #: the whole string must match it (``KeyMaterialId``: hex digits), when given
    pattern: re.Pattern[str] | None = None

    def from_json(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise _ShapeError(path, "must be a string")
        if not self.min_length <= len(value) <= self.max_length:
            raise _ShapeError(path, f"must be {self.min_length} to {self.max_length} characters long")
        if self.pattern is not None and not self.pattern.fullmatch(value):
            raise _ShapeError(path, f"must match {self.pattern.pattern}")
        return value

    to_json = from_json

    def max_json_length(self) -> int:
        return 2 + 6 * self.max_length  # every character as a \uXXXX escape


@dataclass(frozen=True)
class Boolean(_Shape):
    def from_json(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise _ShapeError(path, "must be true or false")
        return value

    to_json = from_json

    def max_json_length(self) -> int:
        return len("false")


@dataclass(frozen=True)
class List(_Shape):
    """A JSON array of ``member`` values (``GrantTokens``); a list or tuple in Python."""

    member: _Shape
    min_items: int
    max_items: int

    def from_json(self, value: Any, path: str) -> list[Any]:
        return self._convert(value, path, to_json=False)

    def to_json(self, value: Any, path: str) -> list[Any]:
        return self._convert(value, path, to_json=True)

    def _convert(self, value: Any, path: str, *, to_json: bool) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise _ShapeError(path, "must be a list")
        if not self.min_items <= len(value) <= self.max_items:
            raise _ShapeError(path, f"must have {self.min_items} to {self.max_items} items")
        convert = self.member.to_json if to_json else self.member.from_json
        return [convert(item, f"{path}[{index}]") for index, item in enumerate(value)]

    def max_json_length(self) -> int:
        return 2 + self.max_items * (self.member.max_json_length() + 1)


@dataclass(frozen=True)
class Map(_Shape):
    """A JSON object of string keys to string values (``EncryptionContext``); a mapping in Python."""

    key: String
    value: String
    max_entries: int

    def from_json(self, value: Any, path: str) -> dict[str, str]:
        if not isinstance(value, Mapping):
            raise _ShapeError(path, "must be an object")
        if len(value) > self.max_entries:
            raise _ShapeError(path, f"must have at most {self.max_entries} entries")
        out: dict[str, str] = {}
        for key, item in value.items():
            name = self.key.from_json(key, f"{path} key")
            out[name] = self.value.from_json(item, f"{path}.{escaped(name, 64)}")  # a peer's key: escaped
        return out

    to_json = from_json

    def max_json_length(self) -> int:
        return 2 + self.max_entries * (self.key.max_json_length() + self.value.max_json_length() + 2)


@dataclass(frozen=True)
class Enum(_Shape):
    values: tuple[str, ...]

    def from_json(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise _ShapeError(path, f"must be one of {', '.join(self.values)}")
        return value

    to_json = from_json

    def max_json_length(self) -> int:
        return 2 + max(len(value) for value in self.values)


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

    def max_json_length(self) -> int:
        return 2 + 4 * ((self.max_length + 2) // 3)

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

    def max_json_length(self) -> int:
        return 2 + sum(len(name) + 4 + shape.max_json_length() for name, shape in self.members.items())

    def _convert(self, value: Any, path: str, *, strict: bool, to_json: bool) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _ShapeError(path or "the request", "must be an object")
        out: dict[str, Any] = {}
        for name, member in value.items():
            shape = self.members.get(name) if isinstance(name, str) else None
            where = f"{path}.{name}" if path else str(name)
            if shape is None:
                if strict:
                    raise _ShapeError(escaped(where, 80), "is not a known member")
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
    """One KMS operation the protocol allows, with the shapes of its request and response.

    ``plaintext_member`` is the response member that holds the secret in the clear, null when a Recipient was sent;
    ``check`` applies the rules between request members (it returns what is wrong, or None).
    """

    name: str
    request: Structure
    response: Structure
    plaintext_member: str = "Plaintext"
    check: Callable[[Mapping[str, Any]], str | None] | None = None

    def decode_request(self, request: Any) -> dict[str, Any]:
        """The boto3 parameters for a request's KMS JSON; every member checked (unknown members refused)."""
        try:
            params = self.request.from_json(request, "")
        except _ShapeError as exc:
            raise InvalidRequestError(f"{self.name}: {exc}") from None
        problem = self.check(params) if self.check is not None else None
        if problem is not None:
            raise InvalidRequestError(f"{self.name}: {problem}")
        return params

    def encode_request(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The KMS JSON for boto3-style ``params`` (blobs as bytes), checked as :meth:`decode_request` would."""
        try:
            request = self.request.to_json(params, "")
        except _ShapeError as exc:
            raise UsageError(f"{self.name}: {exc}") from None
        problem = self.check(params) if self.check is not None else None
        if problem is not None:
            raise UsageError(f"{self.name}: {problem}")
        return request

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

# -- the key operations (botocore's KMS model: members, limits, required) ------------------------------------

_KEY_ID = String(1, MAX_KEY_ID_CHARS)
_CIPHERTEXT_BLOB = Blob(1, MAX_CIPHERTEXT_BLOB_BYTES)
_CIPHERTEXT_FOR_RECIPIENT = Blob(1, MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES)
_SECRET = Blob(1, MAX_PLAINTEXT_BYTES)  # the model's PlaintextType: Plaintext, PrivateKeyPlaintext, SharedSecret
_PUBLIC_KEY = Blob(1, MAX_PUBLIC_KEY_BYTES)
_GRANT_TOKENS = List(String(1, MAX_GRANT_TOKEN_CHARS), 0, MAX_GRANT_TOKENS)
# The model bounds neither the entries nor their strings: the frame (512 KiB) bounds what a request can hold.
_ENCRYPTION_CONTEXT = Map(String(0, MAX_FRAME_SIZE), String(0, MAX_FRAME_SIZE), max_entries=MAX_FRAME_SIZE // 8)
_KEY_MATERIAL_ID = String(KEY_MATERIAL_ID_CHARS, KEY_MATERIAL_ID_CHARS, re.compile("[a-f0-9]+"))
_IGNORE_CIPHERTEXT = "IGNORE_CIPHERTEXT"


def _decrypt_rules(params: Mapping[str, Any]) -> str | None:
    # Optional in the model only so that a dry run may leave it out (DryRunModifiers IGNORE_CIPHERTEXT).
    if "CiphertextBlob" not in params and _IGNORE_CIPHERTEXT not in params.get("DryRunModifiers", ()):
        return "CiphertextBlob is required"
    return None


def _data_key_rules(params: Mapping[str, Any]) -> str | None:
    # KMS: "specify either the KeySpec or the NumberOfBytes parameter (but not both)".
    if ("NumberOfBytes" in params) == ("KeySpec" in params):
        return "exactly one of NumberOfBytes and KeySpec is required"
    return None


DECRYPT = Operation(
    name="Decrypt",
    request=Structure(members={
        "CiphertextBlob": _CIPHERTEXT_BLOB,
        "EncryptionContext": _ENCRYPTION_CONTEXT,
        "GrantTokens": _GRANT_TOKENS,
        "KeyId": _KEY_ID,
        "EncryptionAlgorithm": Enum(ENCRYPTION_ALGORITHMS),
        "Recipient": _RECIPIENT,
        "DryRun": Boolean(),
        "DryRunModifiers": List(Enum((_IGNORE_CIPHERTEXT,)), 0, 16),  # unbounded in the model
    }),
    response=Structure(members={
        "KeyId": _KEY_ID,
        "Plaintext": _SECRET,
        "EncryptionAlgorithm": Enum(ENCRYPTION_ALGORITHMS),
        "CiphertextForRecipient": _CIPHERTEXT_FOR_RECIPIENT,
        "KeyMaterialId": _KEY_MATERIAL_ID,
    }),
    check=_decrypt_rules,
)

GENERATE_DATA_KEY = Operation(
    name="GenerateDataKey",
    request=Structure(
        members={
            "KeyId": _KEY_ID,
            "EncryptionContext": _ENCRYPTION_CONTEXT,
            "NumberOfBytes": Integer(GENERATE_RANDOM_MIN_BYTES, GENERATE_RANDOM_MAX_BYTES),
            "KeySpec": Enum(tuple(DATA_KEY_SPEC_BYTES)),
            "GrantTokens": _GRANT_TOKENS,
            "Recipient": _RECIPIENT,
            "DryRun": Boolean(),
        },
        required=frozenset({"KeyId"}),
    ),
    response=Structure(members={
        "CiphertextBlob": _CIPHERTEXT_BLOB,
        "Plaintext": _SECRET,
        "KeyId": _KEY_ID,
        "CiphertextForRecipient": _CIPHERTEXT_FOR_RECIPIENT,
        "KeyMaterialId": _KEY_MATERIAL_ID,
    }),
    check=_data_key_rules,
)

GENERATE_DATA_KEY_PAIR = Operation(
    name="GenerateDataKeyPair",
    request=Structure(
        members={
            "EncryptionContext": _ENCRYPTION_CONTEXT,
            "KeyId": _KEY_ID,
            "KeyPairSpec": Enum(DATA_KEY_PAIR_SPECS),
            "GrantTokens": _GRANT_TOKENS,
            "Recipient": _RECIPIENT,
            "DryRun": Boolean(),
        },
        required=frozenset({"KeyId", "KeyPairSpec"}),
    ),
    response=Structure(members={
        "PrivateKeyCiphertextBlob": _CIPHERTEXT_BLOB,
        "PrivateKeyPlaintext": _SECRET,
        "PublicKey": _PUBLIC_KEY,
        "KeyId": _KEY_ID,
        "KeyPairSpec": Enum(DATA_KEY_PAIR_SPECS),
        "CiphertextForRecipient": _CIPHERTEXT_FOR_RECIPIENT,
        "KeyMaterialId": _KEY_MATERIAL_ID,
    }),
    plaintext_member="PrivateKeyPlaintext",
)

DERIVE_SHARED_SECRET = Operation(
    name="DeriveSharedSecret",
    request=Structure(
        members={
            "KeyId": _KEY_ID,
            "KeyAgreementAlgorithm": Enum(KEY_AGREEMENT_ALGORITHMS),
            "PublicKey": _PUBLIC_KEY,
            "GrantTokens": _GRANT_TOKENS,
            "DryRun": Boolean(),
            "Recipient": _RECIPIENT,
        },
        required=frozenset({"KeyId", "KeyAgreementAlgorithm", "PublicKey"}),
    ),
    response=Structure(members={
        "KeyId": _KEY_ID,
        "SharedSecret": _SECRET,
        "CiphertextForRecipient": _CIPHERTEXT_FOR_RECIPIENT,
        "KeyAgreementAlgorithm": Enum(KEY_AGREEMENT_ALGORITHMS),
        "KeyOrigin": Enum(KEY_ORIGINS),
    }),
    plaintext_member="SharedSecret",
)

#: The allow-list: operation name -> :class:`Operation` (the five that take a Recipient).
OPERATIONS: Mapping[str, Operation] = {operation.name: operation for operation in (
    GENERATE_RANDOM, DECRYPT, GENERATE_DATA_KEY, GENERATE_DATA_KEY_PAIR, DERIVE_SHARED_SECRET)}


#: The largest KMS answer body read by anyone reading KMS answers (the parent; the enclave in tunnel mode), in
#: bytes: four times the largest legal answer of any operation on the wire table (GenerateDataKeyPair: every
#: response member at its API maximum, in JSON, strings fully escaped), plus 1 KiB each for an error message.
#: A longer answer is refused after reading at most this much, whatever its Content-Length says.
MAX_KMS_ANSWER_BYTES = 4 * (max(operation.response.max_json_length() for operation in OPERATIONS.values()) + 1024)


def recipient_info(attestation_document: bytes) -> dict[str, Any]:
    """The ``Recipient`` member for ``attestation_document`` (boto3 form), with RSAES_OAEP_SHA_256."""
    return {"AttestationDocument": attestation_document, "KeyEncryptionAlgorithm": RSAES_OAEP_SHA_256}



# -- GenerateRandom, for clients --------------------------------------------------------------------------------


def generate_random_request(
    number_of_bytes: int, *, attestation_document: bytes | None = None, custom_key_store_id: str | None = None,
) -> dict[str, Any]:
    """The KMS JSON of a GenerateRandom request; with ``attestation_document``, a Recipient (RSAES_OAEP_SHA_256)."""
    params: dict[str, Any] = {"NumberOfBytes": number_of_bytes}
    if custom_key_store_id is not None:
        params["CustomKeyStoreId"] = custom_key_store_id
    if attestation_document is not None:
        params["Recipient"] = recipient_info(attestation_document)
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
