"""The key operations of the simulated KMS, each as botocore's model and the KMS API reference define it.

Key management: CreateKey, DescribeKey, CreateAlias, ListAliases, EnableKey, DisableKey, ScheduleKeyDeletion,
CancelKeyDeletion, PutKeyPolicy, GetKeyPolicy, GetPublicKey. Cryptography: Encrypt, Decrypt, GenerateDataKey and
GenerateDataKeyPair with a symmetric key, DeriveSharedSecret with an ECC key agreement key, all but Encrypt also
with a ``Recipient`` (the secret then leaves only as ``CiphertextForRecipient``, see
:mod:`nitrokit.kms._recipient`).

Each operation reads its members with :class:`~nitrokit.kms._members.Members` (SerializationException for a
wrong type, ValidationException for a broken constraint), then resolves the key (NotFoundException), checks its
state and usage (DisabledException, KMSInvalidStateException, InvalidKeyUsageException), the Recipient, who may
call (AccessDeniedException), and only then does the work; ``DryRun`` stops just before the work with
DryRunOperationException. Answers never carry key material; messages never carry plaintext.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from nitrokit._rsa import PUBLIC_EXPONENT
from nitrokit.kms import _keys
from nitrokit.kms._keys import KEY_SPEC_USAGES, Key, KeyStore
from nitrokit.kms._members import Members
from nitrokit.kms._recipient import Context, Recipient, seal, verify_recipient
from nitrokit.kms.conditions import AttestationConditions, request_context
from nitrokit.kms.errors import KmsConfigError, KmsServiceError
from nitrokit.kms_api import (
    DATA_KEY_PAIR_SPECS,
    DATA_KEY_SPEC_BYTES,
    ENCRYPTION_ALGORITHMS,
    GENERATE_RANDOM_MAX_BYTES,
    GENERATE_RANDOM_MIN_BYTES,
    KEY_AGREEMENT_ALGORITHMS,
    KEY_ORIGINS,
    MAX_CIPHERTEXT_BLOB_BYTES,
    MAX_CUSTOM_KEY_STORE_ID_CHARS,
    MAX_GRANT_TOKEN_CHARS,
    MAX_GRANT_TOKENS,
    MAX_KEY_ID_CHARS,
    MAX_PLAINTEXT_BYTES,
    MAX_PUBLIC_KEY_BYTES,
    MIN_CUSTOM_KEY_STORE_ID_CHARS,
    SYMMETRIC_DEFAULT,
)

__all__ = ["OPERATIONS"]

_KEY_USAGES = ("SIGN_VERIFY", "ENCRYPT_DECRYPT", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE")
_MODEL_KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
                    "ECC_SECG_P256K1", "SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2",
                    "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519", "ML_KEM_512", "ML_KEM_768",
                    "ML_KEM_1024")
# The model gives EncryptionContext no size; this cap (keys and values together) is the simulator's choice.
MAX_ENCRYPTION_CONTEXT_CHARS = 8192
_DRY_RUN = "The request would have succeeded, but the DryRun option is set."
_MAX_DESCRIPTION_CHARS = 8192
_MAX_POLICY_CHARS = 131072
_POLICY_PATTERN = r"[\u0009\u000A\u000D\u0020-\u00FF]+"
_POLICY_NAME_PATTERN = r"[\w]+"


def _store(context: Context) -> KeyStore:
    assert context.keys is not None
    return context.keys


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _key_id_member(members: Members, name: str = "KeyId", *, required: bool = True) -> str | None:
    return members.string(name, required=required, min_len=1, max_len=MAX_KEY_ID_CHARS)


def _encryption_context(members: Members) -> dict[str, str] | None:
    context = members.string_map("EncryptionContext")
    if context is not None and sum(len(k) + len(v) for k, v in context.items()) > MAX_ENCRYPTION_CONTEXT_CHARS:
        members.problems.append(f"Value at 'encryptionContext' failed to satisfy constraint: the keys and values "
                                f"together must not exceed {MAX_ENCRYPTION_CONTEXT_CHARS} characters")
    return context


def _grant_tokens(members: Members) -> None:
    """Grant tokens are checked against the model and otherwise not simulated (there are no grants)."""
    members.string_list("GrantTokens", max_items=MAX_GRANT_TOKENS, item_min=1, item_max=MAX_GRANT_TOKEN_CHARS)


def _authorize(context: Context, action: str, key: Key, *, recipient: Recipient | None = None,
               encryption_context: Mapping[str, str] | None = None, takes_recipient: bool = False) -> None:
    """The key's policy (evaluated by :mod:`nitrokit.kms.conditions`, the request's condition keys being the
    Recipient's PCRs and the encryption context), and the recipient-required switch for an operation that
    takes a Recipient. AccessDeniedException names the action and the key; the log line says why."""
    denied = None
    if takes_recipient and context.recipient_required and recipient is None:
        denied = "a Recipient is required"
    else:
        denied = key.conditions.evaluate(request_context(recipient.pcrs if recipient else None, encryption_context),
                                         action=f"kms:{action}", resource=key.arn)
    if denied is not None:
        why = ("with an explicit deny in a resource-based policy" if denied.endswith("explicit Deny") else
               f"because no resource-based policy allows the kms:{action} action")
        raise KmsServiceError("AccessDeniedException", f"User: {context.caller} is not authorized to perform: "
                                                       f"kms:{action} on resource: {key.arn} {why}", reason=denied)


def _policy(text: str, key_arn: str, *, bypass: bool | None) -> tuple[str, AttestationConditions]:
    """A key policy parsed (MalformedPolicyDocumentException if the evaluator cannot read it), and KMS's
    lockout safety check: unless bypassed, it must let the caller PutKeyPolicy afterwards."""
    try:
        conditions = AttestationConditions.from_json_text(text, what="the key policy")
    except KmsConfigError as exc:
        raise KmsServiceError("MalformedPolicyDocumentException",
                              str(exc).replace("attestation conditions: ", "The key policy: ", 1)) from None
    if not bypass and conditions.evaluate({}, action="kms:PutKeyPolicy", resource=key_arn) is not None:
        raise KmsServiceError("MalformedPolicyDocumentException",
                              "The new key policy will not allow you to update the key policy in the future.")
    return text, conditions


def _with_secret(answer: dict[str, Any], member: str, secret: bytes, recipient: Recipient | None) -> dict[str, Any]:
    """The answer with its secret: as ``member`` in the clear, or with a Recipient only sealed to it, in
    ``CiphertextForRecipient`` (``member`` then absent, as KMS answers)."""
    if recipient is None:
        answer[member] = _b64(secret)
    else:
        answer["CiphertextForRecipient"] = _b64(seal(secret, recipient))
    return answer


def _dry_run(members: Members) -> None:
    if members.params.get("DryRun") is True:
        raise KmsServiceError("DryRunOperationException", _DRY_RUN, status=412)


def _symmetric_algorithm(key: Key, algorithm: str | None, operation: str) -> None:
    if algorithm is not None and algorithm != SYMMETRIC_DEFAULT:
        raise KmsServiceError("InvalidKeyUsageException", f"{key.arn} key usage is {key.key_usage} (key spec "
                                                          f"{key.key_spec}) which is not valid for {operation} with "
                                                          f"EncryptionAlgorithm {algorithm}.")


# --- key management ---------------------------------------------------------------------------------------

def create_key(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    policy = members.string("Policy", min_len=1, max_len=_MAX_POLICY_CHARS, pattern=_POLICY_PATTERN)
    description = members.string("Description", min_len=0, max_len=_MAX_DESCRIPTION_CHARS)
    usage = members.string("KeyUsage", enum=_KEY_USAGES)
    legacy_spec = members.string("CustomerMasterKeySpec", enum=_MODEL_KEY_SPECS[:13])
    spec = members.string("KeySpec", enum=_MODEL_KEY_SPECS)
    origin = members.string("Origin", enum=KEY_ORIGINS)
    store_id = members.string("CustomKeyStoreId", min_len=MIN_CUSTOM_KEY_STORE_ID_CHARS,
                              max_len=MAX_CUSTOM_KEY_STORE_ID_CHARS)
    bypass = members.boolean("BypassPolicyLockoutSafetyCheck")
    multi_region = members.boolean("MultiRegion")
    tags = params.get("Tags")
    if tags is not None and not isinstance(tags, list):
        raise KmsServiceError("SerializationException", "Tags must be a list")
    members.check()
    if spec is not None and legacy_spec is not None:
        raise KmsServiceError("ValidationException", "You cannot specify KeySpec and CustomerMasterKeySpec in the "
                                                     "same request. CustomerMasterKeySpec parameter is deprecated. "
                                                     "Use KeySpec instead.")
    key_spec = spec or legacy_spec or SYMMETRIC_DEFAULT
    if key_spec not in KEY_SPEC_USAGES:
        raise KmsServiceError("UnsupportedOperationException",
                              f"KeySpec {key_spec} is not simulated (nitrokit's simulated KMS creates "
                              f"{', '.join(KEY_SPEC_USAGES)})")
    if (origin or "AWS_KMS") != "AWS_KMS" or store_id is not None or multi_region:
        raise KmsServiceError("UnsupportedOperationException",
                              "Only Origin AWS_KMS single-region keys in the default key store are simulated")
    store = _store(context)
    key_id = str(uuid.uuid4())
    parsed = _policy(policy, store.key_arn(key_id), bypass=bypass) if policy is not None else None
    key = store.create(key_spec=key_spec, key_usage=usage, description=description or "", key_id=key_id,
                       policy=parsed)
    return {"KeyMetadata": key.metadata()}


def _named_key(params: Mapping[str, Any], context: Context, action: str) -> Key:
    """The key of a request with only KeyId and GrantTokens, once its policy allows ``action``."""
    members = Members(params)
    key_id = _key_id_member(members)
    _grant_tokens(members)
    members.check()
    assert key_id is not None
    key = _store(context).resolve(key_id)
    _authorize(context, action, key)
    return key


def describe_key(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    return {"KeyMetadata": _named_key(params, context, "DescribeKey").metadata()}


def _state_change(action: str, operation: str) -> Callable[[Mapping[str, Any], Context], dict[str, Any]]:
    def handler(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
        members = Members(params)
        key_id = _key_id_member(members)
        members.check()
        assert key_id is not None
        store = _store(context)
        _authorize(context, operation, store.resolve(key_id))
        key = store.change_state(key_id, action)
        return {"KeyId": key.arn} if action == "cancel" else {}
    return handler


def schedule_key_deletion(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    key_id = _key_id_member(members)
    window = members.integer("PendingWindowInDays", minimum=1, maximum=365)
    members.check()
    assert key_id is not None
    if window is not None and not 7 <= window <= 30:
        raise KmsServiceError("ValidationException", "PendingWindowInDays value must be between 7 and 30 "
                                                     "inclusive.")
    days = window or 30
    store = _store(context)
    _authorize(context, "ScheduleKeyDeletion", store.resolve(key_id))
    key = store.change_state(key_id, "schedule", window_days=days)
    return {"KeyId": key.arn, "DeletionDate": key.deletion_date, "KeyState": key.state,
            "PendingWindowInDays": days}


def create_alias(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    name = members.string("AliasName", required=True, min_len=1, max_len=256, pattern=_keys.ALIAS_PATTERN)
    target = _key_id_member(members, "TargetKeyId")
    members.check()
    assert name is not None and target is not None
    store = _store(context)
    if not (target.startswith(_keys.ALIAS_PREFIX) or ":alias/" in target):
        _authorize(context, "CreateAlias", store.resolve(target))
    store.create_alias(name, target)
    return {}


def put_key_policy(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    key_id = _key_id_member(members)
    name = members.string("PolicyName", min_len=1, max_len=128, pattern=_POLICY_NAME_PATTERN)
    policy = members.string("Policy", required=True, min_len=1, max_len=_MAX_POLICY_CHARS,
                            pattern=_POLICY_PATTERN)
    bypass = members.boolean("BypassPolicyLockoutSafetyCheck")
    members.check()
    assert key_id is not None and policy is not None
    store = _store(context)
    key = store.resolve(key_id)
    _authorize(context, "PutKeyPolicy", key)
    _policy_name(name)
    store.set_policy(key, _policy(policy, key.arn, bypass=bypass))
    return {}


def get_key_policy(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    key_id = _key_id_member(members)
    name = members.string("PolicyName", min_len=1, max_len=128, pattern=_POLICY_NAME_PATTERN)
    members.check()
    assert key_id is not None
    key = _store(context).resolve(key_id)
    _authorize(context, "GetKeyPolicy", key)
    _policy_name(name)
    return {"Policy": key.policy, "PolicyName": "default"}


def _policy_name(name: str | None) -> None:
    if name is not None and name != "default":
        raise KmsServiceError("NotFoundException", "The policy name is not valid. The only valid policy name is "
                                                   "'default'.")


def list_aliases(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    key_id = _key_id_member(members, required=False)
    limit = members.integer("Limit", minimum=1, maximum=1000)
    marker = members.string("Marker", min_len=1, max_len=1024, pattern=r"[\u0020-\u00FF]*")
    members.check()
    return _store(context).list_aliases(key_id=key_id, limit=min(limit or 50, 100), marker=marker)


# --- symmetric cryptography -------------------------------------------------------------------------------

def encrypt(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    key_id = _key_id_member(members)
    plaintext = members.blob("Plaintext", required=True, min_len=1, max_len=MAX_PLAINTEXT_BYTES)
    encryption_context = _encryption_context(members)
    _grant_tokens(members)
    algorithm = members.string("EncryptionAlgorithm", enum=ENCRYPTION_ALGORITHMS)
    members.boolean("DryRun")
    members.check()
    assert key_id is not None and plaintext is not None
    key = _store(context).resolve(key_id)
    _authorize(context, "Encrypt", key, encryption_context=encryption_context)
    key.require_usable("Encrypt")
    _symmetric_algorithm(key, algorithm, "Encrypt")
    _dry_run(members)
    return {"CiphertextBlob": _b64(_keys.seal_blob(key, plaintext, encryption_context)), "KeyId": key.arn,
            "EncryptionAlgorithm": SYMMETRIC_DEFAULT}


def decrypt(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    blob = members.blob("CiphertextBlob", required=True, min_len=1, max_len=MAX_CIPHERTEXT_BLOB_BYTES)
    encryption_context = _encryption_context(members)
    _grant_tokens(members)
    key_id = _key_id_member(members, required=False)
    algorithm = members.string("EncryptionAlgorithm", enum=ENCRYPTION_ALGORITHMS)
    request = members.recipient()
    members.boolean("DryRun")
    members.check()
    assert blob is not None
    store = _store(context)
    named = store.resolve(key_id) if key_id is not None else None
    blob_key = _keys.blob_key_id(blob)
    key = store.by_uuid(blob_key) if blob_key is not None else None
    recipient = verify_recipient(request[0], context) if request is not None else None
    if named is not None and (key is None or key.key_id != named.key_id):
        _authorize(context, "Decrypt", named, recipient=recipient, encryption_context=encryption_context,
                   takes_recipient=True)
        if named.state == "Enabled" and named.key_usage == _keys.ENCRYPT_DECRYPT:
            raise KmsServiceError("IncorrectKeyException", "The key ID in the request does not identify a CMK "
                                                           "that can perform this operation.")
        named.require_usable("Decrypt")
    if key is None:
        raise KmsServiceError("InvalidCiphertextException", "", reason="not a ciphertext of a key here")
    _authorize(context, "Decrypt", key, recipient=recipient, encryption_context=encryption_context,
               takes_recipient=True)
    key.require_usable("Decrypt")
    _symmetric_algorithm(key, algorithm, "Decrypt")
    plaintext = _keys.open_blob(key, blob, encryption_context)
    _dry_run(members)
    answer: dict[str, Any] = {"KeyId": key.arn, "EncryptionAlgorithm": SYMMETRIC_DEFAULT}
    return _with_secret(answer, "Plaintext", plaintext, recipient)


def generate_data_key(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    key_id = _key_id_member(members)
    encryption_context = _encryption_context(members)
    count = members.integer("NumberOfBytes", minimum=GENERATE_RANDOM_MIN_BYTES, maximum=GENERATE_RANDOM_MAX_BYTES)
    spec = members.string("KeySpec", enum=tuple(DATA_KEY_SPEC_BYTES))
    _grant_tokens(members)
    request = members.recipient()
    members.boolean("DryRun")
    members.check()
    assert key_id is not None
    if (count is None) == (spec is None):
        raise KmsServiceError("ValidationException", "Please specify either number of bytes or key spec.")
    key = _store(context).resolve(key_id)
    recipient = verify_recipient(request[0], context) if request is not None else None
    _authorize(context, "GenerateDataKey", key, recipient=recipient, encryption_context=encryption_context,
               takes_recipient=True)
    key.require_usable("GenerateDataKey")
    _dry_run(members)
    data_key = os.urandom(count if count is not None else DATA_KEY_SPEC_BYTES[spec or ""])
    answer: dict[str, Any] = {"CiphertextBlob": _b64(_keys.seal_blob(key, data_key, encryption_context)),
                              "KeyId": key.arn}
    return _with_secret(answer, "Plaintext", data_key, recipient)


# --- key pairs and key agreement --------------------------------------------------------------------------

# The data key pairs the simulator makes (cryptography's generators); SM2, Ed25519 and ML-KEM are not simulated.
_PAIR_CURVES: Mapping[str, ec.EllipticCurve] = {
    "ECC_NIST_P256": ec.SECP256R1(), "ECC_NIST_P384": ec.SECP384R1(), "ECC_NIST_P521": ec.SECP521R1(),
    "ECC_SECG_P256K1": ec.SECP256K1()}
_PAIR_RSA_BITS = {"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096}


def _spki(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def generate_data_key_pair(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    encryption_context = _encryption_context(members)
    key_id = _key_id_member(members)
    spec = members.string("KeyPairSpec", required=True, enum=DATA_KEY_PAIR_SPECS)
    _grant_tokens(members)
    request = members.recipient()
    members.boolean("DryRun")
    members.check()
    assert key_id is not None and spec is not None
    key = _store(context).resolve(key_id)
    recipient = verify_recipient(request[0], context) if request is not None else None
    _authorize(context, "GenerateDataKeyPair", key, recipient=recipient, encryption_context=encryption_context,
               takes_recipient=True)
    key.require_usable("GenerateDataKeyPair")
    if spec not in _PAIR_CURVES and spec not in _PAIR_RSA_BITS:
        raise KmsServiceError("UnsupportedOperationException",
                              f"KeyPairSpec {spec} is not simulated (nitrokit's simulated KMS makes "
                              f"{', '.join([*_PAIR_RSA_BITS, *_PAIR_CURVES])})")
    _dry_run(members)
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(_PAIR_CURVES[spec]) if spec in _PAIR_CURVES else
        rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=_PAIR_RSA_BITS[spec]))
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    answer: dict[str, Any] = {
        "PrivateKeyCiphertextBlob": _b64(_keys.seal_blob(key, der, encryption_context)),
        "PublicKey": _b64(_spki(private.public_key())), "KeyId": key.arn, "KeyPairSpec": spec}
    return _with_secret(answer, "PrivateKeyPlaintext", der, recipient)


def derive_shared_secret(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    members = Members(params)
    key_id = _key_id_member(members)
    members.string("KeyAgreementAlgorithm", required=True, enum=KEY_AGREEMENT_ALGORITHMS)
    peer = members.blob("PublicKey", required=True, min_len=1, max_len=MAX_PUBLIC_KEY_BYTES)
    _grant_tokens(members)
    members.boolean("DryRun")
    request = members.recipient()
    members.check()
    assert key_id is not None and peer is not None
    key = _store(context).resolve(key_id)
    recipient = verify_recipient(request[0], context) if request is not None else None
    _authorize(context, "DeriveSharedSecret", key, recipient=recipient, takes_recipient=True)
    key.require_usable("DeriveSharedSecret", usage=_keys.KEY_AGREEMENT, key_spec=None)
    assert key.private_key is not None
    try:
        peer_key = serialization.load_der_public_key(peer)
    except (ValueError, TypeError):
        peer_key = None
    if not isinstance(peer_key, ec.EllipticCurvePublicKey) or peer_key.curve.name != key.private_key.curve.name:
        raise KmsServiceError("ValidationException", f"PublicKey must be a DER-encoded SubjectPublicKeyInfo of an "
                                                     f"elliptic-curve key on the KMS key's curve ({key.key_spec})")
    _dry_run(members)
    secret = key.private_key.exchange(ec.ECDH(), peer_key)
    answer: dict[str, Any] = {"KeyId": key.arn, "KeyAgreementAlgorithm": "ECDH", "KeyOrigin": "AWS_KMS"}
    return _with_secret(answer, "SharedSecret", secret, recipient)


def get_public_key(params: Mapping[str, Any], context: Context) -> dict[str, Any]:
    key = _named_key(params, context, "GetPublicKey")
    if key.private_key is None:
        raise KmsServiceError("UnsupportedOperationException", f"{key.arn} key usage is {key.key_usage} (key spec "
                                                               f"{key.key_spec}): a symmetric key has no public key.")
    if key.state != "Enabled":
        key.require_usable("GetPublicKey", usage=key.key_usage, key_spec=None)
    metadata = key.metadata()
    answer = {"KeyId": key.arn, "PublicKey": _b64(_spki(key.private_key.public_key())),
              "CustomerMasterKeySpec": key.key_spec, "KeySpec": key.key_spec, "KeyUsage": key.key_usage}
    for name in ("SigningAlgorithms", "KeyAgreementAlgorithms"):
        if name in metadata:
            answer[name] = metadata[name]
    return answer


#: operation name -> handler(params, context) -> JSON answer
OPERATIONS: Mapping[str, Callable[[Mapping[str, Any], Context], dict[str, Any]]] = {
    "CreateKey": create_key,
    "DescribeKey": describe_key,
    "EnableKey": _state_change("enable", "EnableKey"),
    "DisableKey": _state_change("disable", "DisableKey"),
    "ScheduleKeyDeletion": schedule_key_deletion,
    "CancelKeyDeletion": _state_change("cancel", "CancelKeyDeletion"),
    "PutKeyPolicy": put_key_policy,
    "GetKeyPolicy": get_key_policy,
    "CreateAlias": create_alias,
    "ListAliases": list_aliases,
    "Encrypt": encrypt,
    "Decrypt": decrypt,
    "GenerateDataKey": generate_data_key,
    "GenerateDataKeyPair": generate_data_key_pair,
    "DeriveSharedSecret": derive_shared_secret,
    "GetPublicKey": get_public_key,
}
