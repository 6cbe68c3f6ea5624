"""The parsed envelope: everything :func:`parse_enveloped_data` checked, as plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# OIDs of the one shape we accept, with the names used in messages and in ``inspect``.
OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
OID_DATA = "1.2.840.113549.1.7.1"
OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_SHA256 = "2.16.840.1.101.3.4.2.1"
OID_AES256_CBC = "2.16.840.1.101.3.4.1.42"

OID_NAMES = {
    OID_ENVELOPED_DATA: "envelopedData",
    OID_DATA: "data",
    OID_RSAES_OAEP: "rsaesOaep",
    OID_MGF1: "mgf1",
    OID_SHA256: "sha256",
    OID_AES256_CBC: "aes256-CBC",
    "1.2.840.113549.1.1.1": "rsaEncryption",
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    "2.16.840.1.101.3.4.1.2": "aes128-CBC",
    "2.16.840.1.101.3.4.1.22": "aes192-CBC",
    "2.16.840.1.101.3.4.1.46": "aes256-GCM",
    "1.2.840.113549.1.7.2": "signedData",
    "1.2.840.113549.1.9.16.1.23": "authEnvelopedData",
}

ContentForm = Literal["constructed", "primitive"]


def describe_oid(dotted: str) -> str:
    """``"1.2.3 (name)"`` when the OID has a name we know, else just the dotted form."""
    name = OID_NAMES.get(dotted)
    return f"{dotted} ({name})" if name else dotted


@dataclass(frozen=True, slots=True)
class EnvelopedData:
    """A CiphertextForRecipient that passed the shape check, with its skeleton and its ciphertexts.

    Only :func:`~nitrokit.cms.parse_enveloped_data` makes these; the algorithm fields are recorded as
    found (they can only hold the one accepted value each) so ``inspect`` and tests can compare skeletons.
    """

    version: int
    recipient_version: int
    rid: bytes
    key_encryption_algorithm: str
    oaep_hash_algorithm: str
    oaep_hash_null_parameters: bool
    mgf_algorithm: str
    mgf_hash_algorithm: str
    mgf_hash_null_parameters: bool
    content_type: str
    content_encryption_algorithm: str
    iv: bytes
    content_form: ContentForm
    chunk_sizes: tuple[int, ...]
    indefinite_length: bool
    encrypted_key: bytes = field(repr=False)
    encrypted_content: bytes = field(repr=False)

    @property
    def encrypted_key_length(self) -> int:
        return len(self.encrypted_key)

    @property
    def encrypted_content_length(self) -> int:
        return len(self.encrypted_content)

    def skeleton(self) -> dict[str, Any]:
        """The structure without the per-envelope random values (rid, IV, ciphertexts): for comparing."""
        out = self.to_dict()
        del out["recipient"]["rid"]
        del out["content"]["iv"]
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (no ciphertext bytes, only their lengths)."""
        return {
            "content_type": _oid(OID_ENVELOPED_DATA),
            "encoding": "BER indefinite-length" if self.indefinite_length else "definite-length",
            "version": self.version,
            "recipient": {
                "type": "KeyTransRecipientInfo",
                "version": self.recipient_version,
                "rid": {"type": "subjectKeyIdentifier", "value": self.rid.hex()},
                "key_encryption_algorithm": {
                    **_oid(self.key_encryption_algorithm),
                    "hash": {
                        **_oid(self.oaep_hash_algorithm),
                        "null_parameters": self.oaep_hash_null_parameters,
                    },
                    "mask_generation": {
                        **_oid(self.mgf_algorithm),
                        "hash": {
                            **_oid(self.mgf_hash_algorithm),
                            "null_parameters": self.mgf_hash_null_parameters,
                        },
                    },
                    "label": "",
                },
                "encrypted_key_length": self.encrypted_key_length,
            },
            "content": {
                "content_type": _oid(self.content_type),
                "content_encryption_algorithm": _oid(self.content_encryption_algorithm),
                "iv": self.iv.hex(),
                "encrypted_content_length": self.encrypted_content_length,
                "form": self.content_form,
                "chunk_sizes": list(self.chunk_sizes),
            },
        }


def _oid(dotted: str) -> dict[str, str]:
    return {"oid": dotted, "name": OID_NAMES.get(dotted, "")}
