"""The simulated KMS's key store: KMS keys, their aliases and states, and the symmetric ciphertext format.

A key is addressed as KMS addresses it: by key id (a UUID), key ARN
(``arn:aws:kms:<region>:<account>:key/<id>``), alias name (``alias/<name>``) or alias ARN
(``arn:aws:kms:<region>:<account>:alias/<name>``). An ARN of another region or account, or a name that is none
of these, is ``NotFoundException``, as at KMS.

Symmetric ciphertexts (``CiphertextBlob``) are AES-256-GCM under the key's 32 bytes of material::

    version 0x01 (1 byte) | key id (16 bytes, the UUID) | nonce (12 bytes) | ciphertext | tag (16 bytes)

with the first 29 bytes and the canonical encryption context (a JSON array of ``[key, value]`` pairs sorted
by key, so no two contexts share an encoding) as additional authenticated data. So a blob opens only under
the key that made it and the same context; anything else is ``InvalidCiphertextException``. The store is
thread-safe (one lock); it never logs key material or plaintext.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from nitrokit.kms.conditions import ACCOUNT_ID, AttestationConditions
from nitrokit.kms.errors import KmsConfigError, KmsServiceError
from nitrokit.kms_api import SYMMETRIC_DEFAULT  # the key spec, and the algorithm of its ciphertexts

__all__ = ["ACCOUNT_ID", "Key", "KeyStore", "canonical_context", "default_key_policy", "open_blob", "seal_blob"]

ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
SIGN_VERIFY = "SIGN_VERIFY"
KEY_AGREEMENT = "KEY_AGREEMENT"
#: the key specs the simulator creates, with the key usages KMS allows for each
KEY_SPEC_USAGES: Mapping[str, tuple[str, ...]] = {
    SYMMETRIC_DEFAULT: (ENCRYPT_DECRYPT,),
    "ECC_NIST_P256": (SIGN_VERIFY, KEY_AGREEMENT),
    "ECC_NIST_P384": (SIGN_VERIFY, KEY_AGREEMENT),
    "ECC_NIST_P521": (SIGN_VERIFY, KEY_AGREEMENT),
}
_CURVES: Mapping[str, ec.EllipticCurve] = {"ECC_NIST_P256": ec.SECP256R1(), "ECC_NIST_P384": ec.SECP384R1(),
                                           "ECC_NIST_P521": ec.SECP521R1()}
_SIGNING = {"ECC_NIST_P256": "ECDSA_SHA_256", "ECC_NIST_P384": "ECDSA_SHA_384", "ECC_NIST_P521": "ECDSA_SHA_512"}
MAX_KEYS = 10000
MAX_ALIASES = 10000
_VERSION = b"\x01"
_HEADER_BYTES = 1 + 16 + 12
_TAG_BYTES = 16
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ALIAS_PREFIX = "alias/"
_RESERVED_ALIAS_PREFIX = "alias/aws/"
#: the model's AliasNameType pattern
ALIAS_PATTERN = "^[a-zA-Z0-9:/_-]+$"


def check_alias_name(name: str) -> None:
    """KMS's rules for a new alias beyond the model's pattern: ``alias/<name>``, not ``alias/aws/...``."""
    if not name.startswith(ALIAS_PREFIX) or name == ALIAS_PREFIX:
        raise KmsServiceError("ValidationException", "Alias must start with the prefix \"alias/\". Please "
                              "see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
    if name.startswith(_RESERVED_ALIAS_PREFIX):
        raise KmsServiceError("NotAuthorizedException", "")


@functools.cache
def default_key_policy(account: str = ACCOUNT_ID) -> tuple[str, AttestationConditions]:
    """KMS's default key policy (text, parsed): the account (its root principal) may do everything with the key."""
    text = json.dumps({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
        "Action": "kms:*", "Resource": "*"}]}, indent=2)
    return text, AttestationConditions.from_json_text(text)


@dataclass
class Key:
    """One KMS key. ``material`` is 32 bytes for SYMMETRIC_DEFAULT; ``private_key`` for an ECC key."""

    key_id: str
    arn: str
    key_spec: str
    key_usage: str
    description: str
    created: float
    state: str = "Enabled"
    deletion_date: float | None = None
    material: bytes = field(default=b"", repr=False)
    private_key: ec.EllipticCurvePrivateKey | None = field(default=None, repr=False)
    policy: str = field(default_factory=lambda: default_key_policy()[0], repr=False)
    conditions: AttestationConditions = field(default_factory=lambda: default_key_policy()[1], repr=False)

    def metadata(self) -> dict[str, Any]:
        """DescribeKey's ``KeyMetadata``."""
        data: dict[str, Any] = {
            "AWSAccountId": ACCOUNT_ID, "KeyId": self.key_id, "Arn": self.arn, "CreationDate": self.created,
            "Enabled": self.state == "Enabled", "Description": self.description, "KeyUsage": self.key_usage,
            "KeyState": self.state, "Origin": "AWS_KMS", "KeyManager": "CUSTOMER",
            "CustomerMasterKeySpec": self.key_spec, "KeySpec": self.key_spec, "MultiRegion": False,
        }
        if self.deletion_date is not None:
            data["DeletionDate"] = self.deletion_date
        if self.key_usage == ENCRYPT_DECRYPT:
            data["EncryptionAlgorithms"] = [SYMMETRIC_DEFAULT]
        elif self.key_usage == SIGN_VERIFY:
            data["SigningAlgorithms"] = [_SIGNING[self.key_spec]]
        elif self.key_usage == KEY_AGREEMENT:
            data["KeyAgreementAlgorithms"] = ["ECDH"]
        return data

    def require_usable(self, operation: str, *, usage: str = ENCRYPT_DECRYPT,
                       key_spec: str | None = SYMMETRIC_DEFAULT) -> None:
        """Refuse a disabled or pending-deletion key, or one of another usage/spec, as KMS does."""
        if self.state == "Disabled":
            raise KmsServiceError("DisabledException", f"{self.arn} is disabled.")
        if self.state == "PendingDeletion":
            raise KmsServiceError("KMSInvalidStateException", f"{self.arn} is pending deletion.")
        if self.key_usage != usage or (key_spec is not None and self.key_spec != key_spec):
            raise KmsServiceError("InvalidKeyUsageException",
                                  f"{self.arn} key usage is {self.key_usage} (key spec {self.key_spec}) which is "
                                  f"not valid for {operation}.")


@dataclass
class _Alias:
    name: str
    key_id: str
    created: float
    updated: float


class KeyStore:
    """The keys and aliases of one simulated account in one region."""

    def __init__(self, *, region: str, account: str = ACCOUNT_ID) -> None:
        self.region, self.account = region, account
        self._lock = threading.Lock()
        self._keys: dict[str, Key] = {}
        self._aliases: dict[str, _Alias] = {}

    def key_arn(self, key_id: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:key/{key_id}"

    def alias_arn(self, name: str) -> str:
        return f"arn:aws:kms:{self.region}:{self.account}:{name}"

    # Keys.

    def create(self, *, key_spec: str = SYMMETRIC_DEFAULT, key_usage: str | None = None, description: str = "",
               key_id: str | None = None, material: bytes | None = None,
               policy: tuple[str, AttestationConditions] | None = None) -> Key:
        """A new enabled key; ``key_id``/``material`` fix them (config-loaded keys), else random."""
        usages = KEY_SPEC_USAGES[key_spec]
        usage = key_usage or ENCRYPT_DECRYPT  # KMS's default, whatever the spec
        if usage not in usages:
            raise KmsServiceError("ValidationException", f"KeyUsage {usage} is not compatible with KeySpec "
                                                         f"{key_spec}")
        private_key = None
        if key_spec == SYMMETRIC_DEFAULT:
            material = material if material is not None else os.urandom(32)
            if len(material) != 32:
                raise KmsServiceError("ValidationException", "symmetric key material must be 32 bytes")
        else:
            private_key = ec.generate_private_key(_CURVES[key_spec])
            material = b""
        with self._lock:
            if len(self._keys) >= MAX_KEYS:
                raise KmsServiceError("LimitExceededException", f"The simulator holds at most {MAX_KEYS} keys")
            new_id = key_id or str(uuid.uuid4())
            if new_id in self._keys:
                raise KmsServiceError("AlreadyExistsException", f"Key {self.key_arn(new_id)} already exists")
            key = Key(key_id=new_id, arn=self.key_arn(new_id), key_spec=key_spec, key_usage=usage,
                      description=description, created=time.time(), material=material, private_key=private_key)
            key.policy, key.conditions = policy or default_key_policy(self.account)
            self._keys[new_id] = key
        return key

    def resolve(self, key_id: str) -> Key:
        """The key ``key_id`` names (id, key ARN, alias name or alias ARN), or NotFoundException."""
        with self._lock:
            return self._resolve(key_id)

    def _resolve(self, text: str) -> Key:
        name = text
        prefix = f"arn:aws:kms:{self.region}:{self.account}:"
        if text.startswith("arn:"):
            if not text.startswith(prefix):
                raise KmsServiceError("NotFoundException", f"Invalid arn {text}")
            name = text[len(prefix):]
            if name.startswith("key/"):
                key = self._keys.get(name[4:])
                if key is None:
                    raise KmsServiceError("NotFoundException", f"Key '{text}' does not exist")
                return key
        if name.startswith(ALIAS_PREFIX):
            alias = self._aliases.get(name)
            if alias is None:
                raise KmsServiceError("NotFoundException", f"Alias {self.alias_arn(name)} is not found.")
            return self._keys[alias.key_id]
        if text.startswith("arn:") or not _UUID_RE.fullmatch(name):
            raise KmsServiceError("NotFoundException", f"Invalid keyId '{text}'")
        key = self._keys.get(name)
        if key is None:
            raise KmsServiceError("NotFoundException", f"Key '{self.key_arn(name)}' does not exist")
        return key

    def by_uuid(self, raw: bytes) -> Key | None:
        with self._lock:
            return self._keys.get(str(uuid.UUID(bytes=raw)))

    def change_state(self, key_id: str, action: str, *, window_days: int = 30) -> Key:
        """``action`` "enable", "disable", "schedule" (deletion) or "cancel" (deletion), with KMS's rules: only
        cancel acts on a key pending deletion (which then is Disabled), and only on one."""
        with self._lock:
            key = self._resolve(key_id)
            pending = key.state == "PendingDeletion"
            if pending != (action == "cancel"):
                state = "pending deletion" if pending else "not pending deletion"
                raise KmsServiceError("KMSInvalidStateException", f"{key.arn} is {state}.")
            if action == "schedule":
                key.state, key.deletion_date = "PendingDeletion", time.time() + window_days * 86400
            elif action == "cancel":
                key.state, key.deletion_date = "Disabled", None
            else:
                key.state = "Enabled" if action == "enable" else "Disabled"
            return key

    def set_policy(self, key: Key, policy: tuple[str, AttestationConditions]) -> None:
        with self._lock:
            if key.state == "PendingDeletion":
                raise KmsServiceError("KMSInvalidStateException", f"{key.arn} is pending deletion.")
            key.policy, key.conditions = policy

    def has(self, key_id: str) -> bool:
        with self._lock:
            return key_id in self._keys

    # Persistence (nitrokit.kms._state writes and reads what these give and take).

    def snapshot(self) -> dict[str, Any]:
        """Every key and alias as JSON-ready data, key material included (for the state directory only)."""
        with self._lock:
            keys = [{"key_id": key.key_id, "key_spec": key.key_spec, "key_usage": key.key_usage,
                     "description": key.description, "created": key.created, "state": key.state,
                     "deletion_date": key.deletion_date, "policy": key.policy,
                     "material": key.material.hex() if key.private_key is None else key.private_key.private_bytes(
                         serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                         serialization.NoEncryption()).decode("ascii")}
                    for key in self._keys.values()]
            aliases = [{"name": alias.name, "key_id": alias.key_id, "created": alias.created,
                        "updated": alias.updated} for alias in self._aliases.values()]
        return {"region": self.region, "account": self.account, "keys": keys, "aliases": aliases}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Add the keys and aliases of a :meth:`snapshot`; KmsConfigError for anything it did not write."""
        if data.get("region") != self.region or data.get("account") != self.account:
            raise KmsConfigError(f"state_dir: the saved keys are of region {data.get('region')!r}, not {self.region!r}")
        try:
            keys, aliases = list(data["keys"]), list(data["aliases"])
            for item in keys:
                self._restore_key(item)
            for item in aliases:
                name, key_id = str(item["name"]), str(item["key_id"])
                if key_id not in self._keys or not name.startswith(ALIAS_PREFIX) or name in self._aliases:
                    raise ValueError(f"alias {name}")
                self._aliases[name] = _Alias(name, key_id, float(item["created"]), float(item["updated"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise KmsConfigError(f"state_dir: a saved key or alias is not valid ({type(exc).__name__}: "
                                 f"{str(exc)[:80]})") from None

    def _restore_key(self, item: Mapping[str, Any]) -> None:
        key_id, spec, usage, state = (str(item["key_id"]), str(item["key_spec"]), str(item["key_usage"]),
                                      str(item["state"]))
        if (not _UUID_RE.fullmatch(key_id) or key_id in self._keys or usage not in KEY_SPEC_USAGES[spec]
                or state not in ("Enabled", "Disabled", "PendingDeletion")):
            raise ValueError(f"key {key_id}")
        material, private_key = b"", None
        if spec == SYMMETRIC_DEFAULT:
            material = bytes.fromhex(str(item["material"]))
            if len(material) != 32:
                raise ValueError(f"key {key_id}: material")
        else:
            loaded = serialization.load_pem_private_key(str(item["material"]).encode("ascii"), password=None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey) or loaded.curve.name != _CURVES[spec].name:
                raise ValueError(f"key {key_id}: not an {spec} key")
            private_key = loaded
        policy = str(item["policy"])
        deletion = item.get("deletion_date")
        self._keys[key_id] = Key(key_id=key_id, arn=self.key_arn(key_id), key_spec=spec, key_usage=usage,
                                 description=str(item["description"]), created=float(item["created"]), state=state,
                                 deletion_date=float(deletion) if deletion is not None else None, material=material,
                                 private_key=private_key, policy=policy,
                                 conditions=AttestationConditions.from_json_text(policy, what=f"key {key_id}"))

    # Aliases.

    def create_alias(self, name: str, target: str) -> None:
        check_alias_name(name)
        with self._lock:
            if target.startswith(ALIAS_PREFIX) or ":alias/" in target:
                raise KmsServiceError("ValidationException", "TargetKeyId must be a key id or key ARN, not an alias")
            key = self._resolve(target)
            if key.state == "PendingDeletion":
                raise KmsServiceError("KMSInvalidStateException", f"{key.arn} is pending deletion.")
            if name in self._aliases:
                raise KmsServiceError("AlreadyExistsException",
                                      f"An alias with the name {self.alias_arn(name)} already exists")
            if len(self._aliases) >= MAX_ALIASES:
                raise KmsServiceError("LimitExceededException", f"The simulator holds at most {MAX_ALIASES} aliases")
            now = time.time()
            self._aliases[name] = _Alias(name, key.key_id, now, now)

    def list_aliases(self, *, key_id: str | None, limit: int, marker: str | None) -> dict[str, Any]:
        with self._lock:
            target = self._resolve(key_id).key_id if key_id is not None else None
            names = sorted(name for name, alias in self._aliases.items()
                           if target is None or alias.key_id == target)
            start = 0
            if marker is not None:
                if marker not in names:
                    raise KmsServiceError("InvalidMarkerException", "The marker is not valid")
                start = names.index(marker)
            page = names[start:start + limit]
            entries = [{"AliasName": name, "AliasArn": self.alias_arn(name),
                        "TargetKeyId": self._aliases[name].key_id, "CreationDate": self._aliases[name].created,
                        "LastUpdatedDate": self._aliases[name].updated} for name in page]
            rest = names[start + limit:]
        answer: dict[str, Any] = {"Aliases": entries, "Truncated": bool(rest)}
        if rest:
            answer["NextMarker"] = rest[0]
        return answer


def canonical_context(context: Mapping[str, str] | None) -> bytes:
    """The encryption context as additional authenticated data: sorted ``[key, value]`` pairs in JSON."""
    pairs = sorted((context or {}).items())
    return json.dumps(pairs, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def seal_blob(key: Key, plaintext: bytes, context: Mapping[str, str] | None) -> bytes:
    """A ``CiphertextBlob`` of ``plaintext`` under the symmetric ``key``, bound to ``context``."""
    header = _VERSION + uuid.UUID(key.key_id).bytes + os.urandom(12)
    return header + AESGCM(key.material).encrypt(header[17:], plaintext, header + canonical_context(context))


def blob_key_id(blob: bytes) -> bytes | None:
    """The 16-byte key UUID a blob names, or None if it is not one of ours."""
    if len(blob) < _HEADER_BYTES + _TAG_BYTES or blob[:1] != _VERSION:
        return None
    return blob[1:17]


def open_blob(key: Key, blob: bytes, context: Mapping[str, str] | None) -> bytes:
    """The plaintext of ``blob`` under ``key`` and ``context``, or InvalidCiphertextException."""
    header = blob[:_HEADER_BYTES]
    try:
        return AESGCM(key.material).decrypt(header[17:], blob[_HEADER_BYTES:], header + canonical_context(context))
    except InvalidTag:
        raise KmsServiceError("InvalidCiphertextException", "", reason="authentication failed") from None
