"""Configuration of the simulated KMS: who may call it, what it trusts, what it refuses, how it misbehaves.

Build a :class:`KmsSimConfig` in Python (every field has an offline-friendly default) or load one from a JSON
or TOML file with :func:`load_config`::

    region = "us-east-1"
    root = "fixture"                  # "fixture" (nitrokit's test PKI), "aws" (the real Nitro root) or a PEM path
    recipient_required = false        # true: an operation that takes a Recipient, without one: AccessDenied
    any_credentials = false           # true: any access key signs (SigV4 form checked, not the signature)

    [[credentials]]                   # default: AWS's documented example pair
    access_key_id = "AKIAIOSFODNN7EXAMPLE"
    secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

    [[custom_key_stores]]
    id = "cks-1234567890abcdef0"
    type = "AWS_CLOUDHSM"             # or "EXTERNAL_KEY_STORE"
    connection_state = "CONNECTED"    # CONNECTING, DISCONNECTED, DISCONNECTING, FAILED

    [conditions]                      # or a KMS key-policy statement / document: see nitrokit.kms.conditions
    "kms:RecipientAttestation:PCR0" = "<96 hex digits>"

    state_dir = "kms-state"           # optional: keep keys across runs (relative to this file); holds key material

    [[keys]]                          # KMS keys present at start (fixed ids and material: reproducible tests)
    key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
    key_spec = "SYMMETRIC_DEFAULT"    # or ECC_NIST_P256/P384/P521 (with key_usage SIGN_VERIFY or KEY_AGREEMENT)
    material = "<64 hex digits>"      # symmetric only; default: random
    aliases = ["alias/app"]
    enabled = true
    policy = '{"Version": "2012-10-17", "Statement": [...]}'   # or a table; default: KMS's default key policy

    [faults]
    internal_error_rate = 0.0         # share of calls answered KMSInternalException (500)
    dependency_timeout_rate = 0.0     # share answered DependencyTimeoutException (500)
    fail_next = 0                     # the next N calls fail with fail_next_error
    fail_next_error = "KMSInternalException"
    latency_ms = 0                    # added to every authenticated call
    seed = 0                          # optional, makes the rates reproducible

Unknown keys are refused (:class:`~nitrokit.kms.errors.KmsConfigError`), so a typo never turns a check off.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from nitrokit import strict_json
from nitrokit.attestation import AttestationError, load_root
from nitrokit.attestation.roots import ROOT_NAMES
from nitrokit.hextext import decode_hex
from nitrokit.kms._keys import ALIAS_PATTERN, KEY_SPEC_USAGES, check_alias_name
from nitrokit.kms.conditions import AttestationConditions
from nitrokit.kms.errors import KmsConfigError, KmsServiceError
from nitrokit.kms_api import SYMMETRIC_DEFAULT

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "AccessKey",
    "CustomKeyStore",
    "Faults",
    "KmsSimConfig",
    "SimulatedKey",
    "load_config",
]

MAX_CONFIG_FILE_BYTES = 1024 * 1024
MAX_LATENCY_SECONDS = 30.0
FAULT_ERRORS = ("KMSInternalException", "DependencyTimeoutException")
KEY_STORE_TYPES = ("AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")
CONNECTION_STATES = ("CONNECTED", "CONNECTING", "DISCONNECTED", "DISCONNECTING", "FAILED")
_TYPE_ALIASES = {"cloudhsm": "AWS_CLOUDHSM", "aws_cloudhsm": "AWS_CLOUDHSM", "external": "EXTERNAL_KEY_STORE",
                 "external_key_store": "EXTERNAL_KEY_STORE"}


@dataclass(frozen=True, kw_only=True)
class AccessKey:
    """An access key pair the simulator accepts. ``session_token``, if set, must come with each request."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("access_key_id", "secret_access_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or not value.isprintable() or " " in value:
                raise KmsConfigError(f"credentials: {name} must be a non-empty string without spaces")
        if "/" in self.access_key_id:
            raise KmsConfigError("credentials: access_key_id must not contain '/'")
        if self.session_token is not None and (not isinstance(self.session_token, str) or not self.session_token):
            raise KmsConfigError("credentials: session_token must be a non-empty string")


# AWS's documented example pair: not a secret, and accepted only by this simulator.
DEFAULT_ACCESS_KEY = AccessKey(access_key_id="AKIAIOSFODNN7EXAMPLE",
                               secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")  # noqa: S106


@dataclass(frozen=True, kw_only=True)
class CustomKeyStore:
    """A custom key store GenerateRandom may name with ``CustomKeyStoreId``."""

    id: str
    type: str = "AWS_CLOUDHSM"
    connection_state: str = "CONNECTED"

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not 1 <= len(self.id) <= 64:
            raise KmsConfigError("custom_key_stores: id must be a string of 1 to 64 characters")
        kind = _TYPE_ALIASES.get(str(self.type).lower(), self.type)
        if kind not in KEY_STORE_TYPES:
            raise KmsConfigError(f"custom_key_stores: type {self.type!r} is not one of {', '.join(KEY_STORE_TYPES)}")
        object.__setattr__(self, "type", kind)
        state = str(self.connection_state).upper()
        if state not in CONNECTION_STATES:
            raise KmsConfigError(f"custom_key_stores: connection_state {self.connection_state!r} is not one of "
                                 f"{', '.join(CONNECTION_STATES)}")
        object.__setattr__(self, "connection_state", state)


@dataclass(frozen=True, kw_only=True)
class Faults:
    """Injected failures and delay, applied after a request is authenticated and before the operation runs."""

    internal_error_rate: float = 0.0
    dependency_timeout_rate: float = 0.0
    fail_next: int = 0
    fail_next_error: str = "KMSInternalException"
    latency_ms: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("internal_error_rate", "dependency_timeout_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise KmsConfigError(f"faults: {name} must be a number from 0 to 1")
        if self.internal_error_rate + self.dependency_timeout_rate > 1.0:
            raise KmsConfigError("faults: internal_error_rate + dependency_timeout_rate must not exceed 1")
        if isinstance(self.fail_next, bool) or not isinstance(self.fail_next, int) or self.fail_next < 0:
            raise KmsConfigError("faults: fail_next must be a non-negative integer")
        if self.fail_next_error not in FAULT_ERRORS:
            raise KmsConfigError(f"faults: fail_next_error must be one of {', '.join(FAULT_ERRORS)}")
        latency = self.latency_ms
        if isinstance(latency, bool) or not isinstance(latency, int | float) or \
                not 0 <= latency <= MAX_LATENCY_SECONDS * 1000:
            raise KmsConfigError(f"faults: latency_ms must be from 0 to {int(MAX_LATENCY_SECONDS * 1000)}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise KmsConfigError("faults: seed must be an integer")


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_CONFIG_KEYS = 100


@dataclass(frozen=True, kw_only=True)
class SimulatedKey:
    """A KMS key the simulator holds from the start: fixed id, material, aliases and policy make runs
    reproducible (a ciphertext made in one run opens in the next).

    ``material``: 32 bytes (or 64 hex digits) for SYMMETRIC_DEFAULT, random if not given; ECC keys always get a
    fresh private key. ``policy``: a key policy (JSON text or the parsed object); default KMS's default key
    policy. It is checked when the config is built (KmsConfigError), without the lockout check CreateKey does.
    """

    key_id: str
    key_spec: str = SYMMETRIC_DEFAULT
    key_usage: str | None = None
    description: str = ""
    material: bytes | str | None = field(default=None, repr=False)
    aliases: tuple[str, ...] = ()
    enabled: bool = True
    policy: str | Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, str) or not _UUID.fullmatch(self.key_id):
            raise KmsConfigError("keys: key_id must be a key id in lower-case UUID form "
                                 "(1234abcd-12ab-34cd-56ef-1234567890ab)")
        usages = KEY_SPEC_USAGES.get(self.key_spec) if isinstance(self.key_spec, str) else None
        if usages is None:
            raise KmsConfigError(f"keys: key_spec must be one of {', '.join(KEY_SPEC_USAGES)}")
        usage = self.key_usage or "ENCRYPT_DECRYPT"
        if usage not in usages:
            raise KmsConfigError(f"keys: {self.key_id}: key_usage {usage} is not compatible with {self.key_spec} "
                                 f"(use {' or '.join(usages)})")
        object.__setattr__(self, "key_usage", usage)
        if not isinstance(self.description, str) or len(self.description) > 8192:
            raise KmsConfigError("keys: description must be a string of at most 8192 characters")
        if self.material is not None:
            if self.key_spec != SYMMETRIC_DEFAULT:
                raise KmsConfigError(f"keys: {self.key_id}: material is for SYMMETRIC_DEFAULT keys only")
            material = (self.material if isinstance(self.material, bytes) else
                        decode_hex(self.material, what=f"keys: {self.key_id}: material", error=KmsConfigError))
            if len(material) != 32:
                raise KmsConfigError(f"keys: {self.key_id}: material must be 32 bytes (64 hex digits)")
            object.__setattr__(self, "material", material)
        aliases = (self.aliases,) if isinstance(self.aliases, str) else tuple(self.aliases)
        for name in aliases:
            if not isinstance(name, str) or not 1 <= len(name) <= 256 or not re.fullmatch(ALIAS_PATTERN, name):
                raise KmsConfigError(f"keys: {self.key_id}: an alias must be alias/<name> of at most 256 "
                                     "characters from a-z A-Z 0-9 : / _ -")
            try:
                check_alias_name(name)
            except KmsServiceError as exc:
                raise KmsConfigError(f"keys: {self.key_id}: {exc.message or 'alias/aws/ names are reserved'}") \
                    from None
        object.__setattr__(self, "aliases", aliases)
        if not isinstance(self.enabled, bool):
            raise KmsConfigError("keys: enabled must be true or false")
        if self.policy is not None:
            text = self.policy if isinstance(self.policy, str) else json.dumps(self.policy)
            AttestationConditions.from_json_text(text, what=f"keys: {self.key_id}: policy")
            object.__setattr__(self, "policy", text)


RootSetting = str | Path | x509.Certificate


@dataclass(frozen=True, kw_only=True)
class KmsSimConfig:
    """Everything the simulator needs; the defaults suit offline tests with fixture documents."""

    credentials: tuple[AccessKey, ...] = (DEFAULT_ACCESS_KEY,)
    region: str = "us-east-1"
    root: RootSetting = "fixture"
    custom_key_stores: tuple[CustomKeyStore, ...] = ()
    keys: tuple[SimulatedKey, ...] = ()
    #: a directory to keep the keys in across runs (created 0700; holds key material in the clear)
    state_dir: Path | None = None
    conditions: AttestationConditions | None = None
    recipient_required: bool = False
    #: accept any access key id (and session token): the SigV4 header's form, scope, date and skew are still
    #: checked, the signature's value cannot be (the secret is unknown). Off by default: strict.
    any_credentials: bool = False
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        credentials = tuple(self.credentials)
        if not credentials or not all(isinstance(item, AccessKey) for item in credentials):
            raise KmsConfigError("credentials: give at least one AccessKey")
        if len({item.access_key_id for item in credentials}) != len(credentials):
            raise KmsConfigError("credentials: access_key_id values must be unique")
        object.__setattr__(self, "credentials", credentials)
        if not isinstance(self.region, str) or not self.region or "/" in self.region or not self.region.isprintable():
            raise KmsConfigError("region must be a non-empty string without '/'")
        stores = tuple(self.custom_key_stores)
        if not all(isinstance(item, CustomKeyStore) for item in stores):
            raise KmsConfigError("custom_key_stores: expected CustomKeyStore values")
        if len({item.id for item in stores}) != len(stores):
            raise KmsConfigError("custom_key_stores: ids must be unique")
        object.__setattr__(self, "custom_key_stores", stores)
        keys = tuple(self.keys)
        if not all(isinstance(item, SimulatedKey) for item in keys) or len(keys) > MAX_CONFIG_KEYS:
            raise KmsConfigError(f"keys: expected at most {MAX_CONFIG_KEYS} SimulatedKey values")
        if len({item.key_id for item in keys}) != len(keys):
            raise KmsConfigError("keys: key ids must be unique")
        aliases = [name for item in keys for name in item.aliases]
        if len(set(aliases)) != len(aliases):
            raise KmsConfigError("keys: an alias names one key only")
        object.__setattr__(self, "keys", keys)
        if self.state_dir is not None:
            if not isinstance(self.state_dir, str | Path) or not str(self.state_dir):
                raise KmsConfigError("state_dir must be a directory path")
            object.__setattr__(self, "state_dir", Path(self.state_dir))
        if self.conditions is not None and not isinstance(self.conditions, AttestationConditions):
            raise KmsConfigError("conditions must be AttestationConditions or None")
        if not isinstance(self.recipient_required, bool):
            raise KmsConfigError("recipient_required must be true or false")
        if not isinstance(self.any_credentials, bool):
            raise KmsConfigError("any_credentials must be true or false")
        if not isinstance(self.faults, Faults):
            raise KmsConfigError("faults must be a Faults value")
        if not isinstance(self.root, str | Path | x509.Certificate):
            raise KmsConfigError("root must be 'fixture', 'aws', a path to a PEM/DER certificate or a Certificate")

    def resolve_root(self) -> x509.Certificate:
        """The trust root for attestation documents."""
        try:
            return load_root(self.root)
        except AttestationError as exc:
            raise KmsConfigError(f"root: {exc}") from None

    def replace(self, **changes: Any) -> KmsSimConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> KmsSimConfig:
        """A config from parsed JSON/TOML. Relative root paths are taken from ``base_dir``."""
        if not isinstance(data, Mapping):
            raise KmsConfigError("the configuration must be an object/table")
        known = {"credentials", "region", "root", "custom_key_stores", "keys", "state_dir", "conditions",
                 "recipient_required",
                 "any_credentials", "faults"}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise KmsConfigError(f"unknown configuration key(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        if "credentials" in data:
            kwargs["credentials"] = tuple(_build(AccessKey, item, "credentials")
                                          for item in _list(data["credentials"], "credentials"))
        if "region" in data:
            kwargs["region"] = data["region"]
        if "root" in data:
            root = data["root"]
            if not isinstance(root, str) or not root:
                raise KmsConfigError("root must be 'fixture', 'aws' or a path")
            if root not in ROOT_NAMES and base_dir is not None:
                root = str(base_dir / root)
            kwargs["root"] = root
        if "custom_key_stores" in data:
            kwargs["custom_key_stores"] = tuple(_build(CustomKeyStore, item, "custom_key_stores")
                                                for item in _list(data["custom_key_stores"], "custom_key_stores"))
        if "state_dir" in data:
            state_dir = data["state_dir"]
            if not isinstance(state_dir, str) or not state_dir:
                raise KmsConfigError("state_dir must be a directory path")
            kwargs["state_dir"] = base_dir / state_dir if base_dir is not None else Path(state_dir)
        if "keys" in data:
            kwargs["keys"] = tuple(_build(SimulatedKey, item, "keys") for item in _list(data["keys"], "keys"))
        if "conditions" in data and data["conditions"] is not None:
            kwargs["conditions"] = AttestationConditions.from_json(data["conditions"])
        if "recipient_required" in data:
            kwargs["recipient_required"] = data["recipient_required"]
        if "any_credentials" in data:
            kwargs["any_credentials"] = data["any_credentials"]
        if "faults" in data:
            kwargs["faults"] = _build(Faults, data["faults"], "faults")
        return cls(**kwargs)


def load_config(path: str | Path) -> KmsSimConfig:
    """Load a config file: TOML if its name ends in ``.toml``, JSON otherwise."""
    path = Path(path)
    with path.open("rb") as handle:
        raw = handle.read(MAX_CONFIG_FILE_BYTES + 1)
    if len(raw) > MAX_CONFIG_FILE_BYTES:
        raise KmsConfigError(f"{path} is larger than {MAX_CONFIG_FILE_BYTES} bytes")
    if path.suffix.lower() != ".toml":
        try:
            data = strict_json.loads(raw, what=str(path), max_bytes=MAX_CONFIG_FILE_BYTES)
        except strict_json.StrictJsonError as exc:
            raise KmsConfigError(str(exc)) from None
        return KmsSimConfig.from_mapping(data, base_dir=path.parent)
    try:
        data = tomllib.loads(raw.decode("utf-8"))  # tomllib refuses duplicate keys itself
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KmsConfigError(f"{path}: not valid TOML: {exc}") from None
    return KmsSimConfig.from_mapping(data, base_dir=path.parent)


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise KmsConfigError(f"{what} must be a list")
    if len(value) > 100:
        raise KmsConfigError(f"{what}: more than 100 entries")
    return value


def _build(kind: type[Any], item: Any, what: str) -> Any:
    if not isinstance(item, Mapping):
        raise KmsConfigError(f"{what}: each entry must be an object/table")
    try:
        return kind(**item)
    except TypeError:
        allowed = ", ".join(kind.__dataclass_fields__)
        raise KmsConfigError(f"{what}: unknown or missing field(s); allowed: {allowed}") from None
