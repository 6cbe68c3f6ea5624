"""Reading one request's members the way AWS JSON services do, for every operation of the simulated KMS.

A member of the wrong JSON type (or bad base64) is a ``SerializationException`` at once; a member of the right
type that breaks a constraint of botocore's model (null where required, length, range, enum, pattern) is
collected, and :meth:`Members.check` raises one ``ValidationException`` naming every problem in AWS's form:
``N validation error(s) detected: Value '...' at 'member' failed to satisfy constraint: ...``. Member paths
are written as AWS writes them (``numberOfBytes``, ``recipient.attestationDocument``). Blob values (plaintexts,
ciphertexts, documents) are never echoed, only their lengths judged; strings are clipped.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

from nitrokit.kms.errors import KmsServiceError
from nitrokit.kms_api import KEY_ENCRYPTION_ALGORITHMS, MAX_ATTESTATION_DOCUMENT_BYTES
from nitrokit.text import clip

__all__ = ["Members", "RecipientRequest", "null_problem", "serialization", "value_problem"]

_SHOWN_STRING = 128
#: (attestation document, key encryption algorithm) as the request gave them, not yet verified
RecipientRequest = tuple[bytes, str]


def serialization(message: str) -> KmsServiceError:
    return KmsServiceError("SerializationException", message)


def null_problem(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def value_problem(value: object, path: str, constraint: str) -> str:
    shown = clip(str(value), _SHOWN_STRING + 3)  # the first _SHOWN_STRING characters, then "..."
    return f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"


def _path(name: str) -> str:
    return ".".join(part[:1].lower() + part[1:] for part in name.split("."))


def _length(low: int | None, high: int | None, size: int) -> str | None:
    if low is not None and size < low:
        return f"Member must have length greater than or equal to {low}"
    if high is not None and size > high:
        return f"Member must have length less than or equal to {high}"
    return None


class Members:
    """One request's parsed JSON object, read member by member."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.problems: list[str] = []

    def string(self, name: str, *, required: bool = False, min_len: int | None = None, max_len: int | None = None,
               enum: Sequence[str] | None = None, pattern: str | None = None) -> str | None:
        value = self.params.get(name)
        if value is None:
            if required:
                self.problems.append(null_problem(_path(name)))
            return None
        if not isinstance(value, str):
            raise serialization(f"{name} must be a string")
        problem = _length(min_len, max_len, len(value))
        if problem is None and enum is not None and value not in enum:
            problem = f"Member must satisfy enum value set: [{', '.join(enum)}]"
        if problem is None and pattern is not None and not re.fullmatch(pattern, value):
            problem = f"Member must satisfy regular expression pattern: {pattern}"
        if problem is not None:
            self.problems.append(value_problem(value, _path(name), problem))
        return value

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None,
                maximum: int | None = None) -> int | None:
        value = self.params.get(name)
        if value is None:
            if required:
                self.problems.append(null_problem(_path(name)))
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise serialization(f"{name} must be an integer")
        if minimum is not None and value < minimum:
            self.problems.append(value_problem(value, _path(name),
                                               f"Member must have value greater than or equal to {minimum}"))
        elif maximum is not None and value > maximum:
            self.problems.append(value_problem(value, _path(name),
                                               f"Member must have value less than or equal to {maximum}"))
        return value

    def boolean(self, name: str) -> bool | None:
        value = self.params.get(name)
        if value is not None and not isinstance(value, bool):
            raise serialization(f"{name} must be a boolean")
        return value

    def blob(self, name: str, *, required: bool = False, min_len: int | None = None,
             max_len: int | None = None, value: Any = None, path: str | None = None) -> bytes | None:
        """A base64 member; ``value``/``path`` read one nested in a structure the caller has opened."""
        raw = self.params.get(name) if path is None else value
        shown_path = path or _path(name)
        if raw is None:
            if required:
                self.problems.append(null_problem(shown_path))
            return None
        if not isinstance(raw, str):
            raise serialization(f"{name} must be a base64 string")
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise serialization(f"{name} is not valid base64") from None
        problem = _length(min_len, max_len, len(data))
        if problem is not None:
            self.problems.append(f"Value at '{shown_path}' failed to satisfy constraint: {problem}")
        return data

    def string_map(self, name: str) -> dict[str, str] | None:
        value = self.params.get(name)
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(isinstance(item, str) for item in value.values()):
            raise serialization(f"{name} must be an object of strings")
        return dict(value)

    def string_list(self, name: str, *, max_items: int, item_min: int, item_max: int) -> list[str] | None:
        value = self.params.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise serialization(f"{name} must be a list of strings")
        if len(value) > max_items:
            self.problems.append(f"Value at '{_path(name)}' failed to satisfy constraint: Member must have length "
                                 f"less than or equal to {max_items}")
        elif any(_length(item_min, item_max, len(item)) for item in value):
            self.problems.append(f"Value at '{_path(name)}' failed to satisfy constraint: Member must satisfy "
                                 f"constraint: [Member must have length less than or equal to {item_max}, Member "
                                 f"must have length greater than or equal to {item_min}]")
        return list(value)

    def recipient(self) -> RecipientRequest | None:
        """``Recipient`` {AttestationDocument 1..262144 bytes, KeyEncryptionAlgorithm RSAES_OAEP_SHA_256}.

        None without a Recipient; a malformed one leaves its problems for :meth:`check` (call it before use).
        """
        recipient = self.params.get("Recipient")
        if recipient is None:
            return None
        if not isinstance(recipient, Mapping):
            raise serialization("Recipient must be an object")
        document = self.blob("Recipient.AttestationDocument", value=recipient.get("AttestationDocument"),
                             path="recipient.attestationDocument", required=True, min_len=1,
                             max_len=MAX_ATTESTATION_DOCUMENT_BYTES)
        algorithm = recipient.get("KeyEncryptionAlgorithm")
        if algorithm is not None and not isinstance(algorithm, str):
            raise serialization("Recipient.KeyEncryptionAlgorithm must be a string")
        if algorithm is None:
            self.problems.append(null_problem("recipient.keyEncryptionAlgorithm"))
        elif algorithm not in KEY_ENCRYPTION_ALGORITHMS:
            self.problems.append(value_problem(algorithm, "recipient.keyEncryptionAlgorithm",
                                               "Member must satisfy enum value set: "
                                               f"[{', '.join(KEY_ENCRYPTION_ALGORITHMS)}]"))
        if document is None or algorithm is None:
            return None
        return document, algorithm

    def check(self) -> None:
        """Raise the collected problems as one ValidationException."""
        if self.problems:
            noun = "error" if len(self.problems) == 1 else "errors"
            raise KmsServiceError("ValidationException",
                                  f"{len(self.problems)} validation {noun} detected: " + "; ".join(self.problems))
