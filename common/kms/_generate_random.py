"""GenerateRandom, as the KMS API reference and botocore's service model define it.

Request members (all optional in the model; NumberOfBytes is required in prose and a missing value is a
ValidationException here, never a crash): ``NumberOfBytes`` integer 1..1024, ``CustomKeyStoreId`` string 1..64,
``Recipient`` {``AttestationDocument`` blob 1..262144 bytes, ``KeyEncryptionAlgorithm`` "RSAES_OAEP_SHA_256"}
(the numbers are :mod:`nitrokit.kms_api`'s, shared with the wire protocol and the enclave client). Unknown
members are ignored, as AWS JSON services do.

Steps, each with the error it answers:

1. types and base64 (SerializationException), then constraints (ValidationException, AWS's message style);
2. with Recipient: the attestation document is verified against the configured root at the current time
   (ValidationException naming the failed step), and its ``public_key`` must be a DER RSA
   SubjectPublicKeyInfo of 2048/3072/4096 bits with an exponent in NIST's range (ValidationException; the
   rules are :mod:`nitrokit._rsa`'s, shared with the CMS code and the enclave);
3. attestation conditions and the recipient-required switch (AccessDeniedException);
4. the custom key store, if named (CustomKeyStoreNotFoundException, UnsupportedOperationException for an
   external key store, CustomKeyStoreInvalidStateException when not CONNECTED);
5. the answer: ``Plaintext``, or with Recipient only ``CiphertextForRecipient`` (the CMS envelope).

Debug-mode documents (PCRs all zero) pass step 2, as they do at KMS; conditions on PCRs then refuse them.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from nitrokit._rsa import RsaKeyError, load_rsa_spki
from nitrokit.attestation import AttestationError, Policy, Verifier
from nitrokit.cms import encrypt_for_recipient
from nitrokit.errors import InputTooLargeError
from nitrokit.kms.conditions import GENERATE_RANDOM, AttestationConditions, context_from_pcrs
from nitrokit.kms.config import CustomKeyStore
from nitrokit.kms.errors import KmsServiceError
from nitrokit.kms_api import (
    GENERATE_RANDOM_MAX_BYTES,
    GENERATE_RANDOM_MIN_BYTES,
    KEY_ENCRYPTION_ALGORITHMS,
    MAX_ATTESTATION_DOCUMENT_BYTES,
    MAX_CUSTOM_KEY_STORE_ID_CHARS,
    MIN_CUSTOM_KEY_STORE_ID_CHARS,
)
from nitrokit.text import clip

# KMS checks the document, not the image: PCRs are for the key policy's conditions (step 3).
_ACCEPT_DEBUG = Policy.any_enclave_image(allow_debug=True)
_SHOWN_STRING = 128


@dataclass(frozen=True)
class Context:
    """What the operation needs from the server, read once per request."""

    verifier: Verifier
    conditions: AttestationConditions | None
    recipient_required: bool
    key_stores: Mapping[str, CustomKeyStore]
    caller: str
    now: datetime | None = None


def generate_random(params: Mapping[str, Any], context: Context) -> dict[str, str]:
    """Run GenerateRandom on parsed JSON ``params``; return the JSON answer or raise KmsServiceError."""
    count, key_store_id, recipient = _read(params)
    public_key: rsa.RSAPublicKey | None = None
    pcrs = None
    if recipient is not None:
        document, _algorithm = recipient
        try:
            result = context.verifier.verify(document, at=context.now, policy=_ACCEPT_DEBUG)
        except AttestationError as exc:  # every way a document can be bad, its size included
            # Within the API's 262144 bytes but over the parser's cap: said apart in the log.
            reason = ("attestation document too large" if isinstance(exc, InputTooLargeError)
                      else f"attestation {exc.step}")
            raise KmsServiceError("ValidationException", f"Invalid attestation document in Recipient: {exc}",
                                  reason=reason) from None
        public_key = _recipient_key(result.document.public_key)
        pcrs = result.document.pcrs

    denied = None
    if context.recipient_required and recipient is None:
        denied = "a Recipient is required"
    elif context.conditions is not None:
        denied = context.conditions.evaluate(context_from_pcrs(pcrs), action=GENERATE_RANDOM)
    if denied is not None:
        raise KmsServiceError("AccessDeniedException",
                              f"User: {context.caller} is not authorized to perform: kms:GenerateRandom because no "
                              "identity-based policy allows the kms:GenerateRandom action",
                              reason=denied)

    if key_store_id is not None:
        _check_key_store(key_store_id, context.key_stores)

    plaintext = os.urandom(count)
    if public_key is None:
        return {"Plaintext": base64.b64encode(plaintext).decode("ascii")}
    envelope = encrypt_for_recipient(plaintext, public_key)
    return {"CiphertextForRecipient": base64.b64encode(envelope).decode("ascii")}


def _read(params: Mapping[str, Any]) -> tuple[int, str | None, tuple[bytes, str] | None]:
    count = params.get("NumberOfBytes")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
        raise _serialization("NumberOfBytes must be an integer")
    key_store_id = params.get("CustomKeyStoreId")
    if key_store_id is not None and not isinstance(key_store_id, str):
        raise _serialization("CustomKeyStoreId must be a string")
    recipient = params.get("Recipient")
    document: bytes | None = None
    algorithm = None
    if recipient is not None:
        if not isinstance(recipient, Mapping):
            raise _serialization("Recipient must be an object")
        encoded = recipient.get("AttestationDocument")
        if encoded is not None:
            if not isinstance(encoded, str):
                raise _serialization("Recipient.AttestationDocument must be a base64 string")
            try:
                document = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise _serialization("Recipient.AttestationDocument is not valid base64") from None
        algorithm = recipient.get("KeyEncryptionAlgorithm")
        if algorithm is not None and not isinstance(algorithm, str):
            raise _serialization("Recipient.KeyEncryptionAlgorithm must be a string")

    problems: list[str] = []
    if count is None:
        problems.append(_null("numberOfBytes"))
    elif count < GENERATE_RANDOM_MIN_BYTES:
        problems.append(_value(count, "numberOfBytes",
                               f"Member must have value greater than or equal to {GENERATE_RANDOM_MIN_BYTES}"))
    elif count > GENERATE_RANDOM_MAX_BYTES:
        problems.append(_value(count, "numberOfBytes",
                               f"Member must have value less than or equal to {GENERATE_RANDOM_MAX_BYTES}"))
    if (key_store_id is not None
            and not MIN_CUSTOM_KEY_STORE_ID_CHARS <= len(key_store_id) <= MAX_CUSTOM_KEY_STORE_ID_CHARS):
        bound = (f"greater than or equal to {MIN_CUSTOM_KEY_STORE_ID_CHARS}" if not key_store_id else
                 f"less than or equal to {MAX_CUSTOM_KEY_STORE_ID_CHARS}")
        problems.append(_value(key_store_id, "customKeyStoreId", f"Member must have length {bound}"))
    if recipient is not None:
        if document is None:
            problems.append(_null("recipient.attestationDocument"))
        elif not 1 <= len(document) <= MAX_ATTESTATION_DOCUMENT_BYTES:
            bound = ("greater than or equal to 1" if not document else
                     f"less than or equal to {MAX_ATTESTATION_DOCUMENT_BYTES}")
            problems.append(f"Value at 'recipient.attestationDocument' failed to satisfy constraint: Member must "
                            f"have length {bound}")
        if algorithm is None:
            problems.append(_null("recipient.keyEncryptionAlgorithm"))
        elif algorithm not in KEY_ENCRYPTION_ALGORITHMS:
            problems.append(_value(algorithm, "recipient.keyEncryptionAlgorithm",
                                   f"Member must satisfy enum value set: [{', '.join(KEY_ENCRYPTION_ALGORITHMS)}]"))
    if problems:
        noun = "error" if len(problems) == 1 else "errors"
        raise KmsServiceError("ValidationException",
                              f"{len(problems)} validation {noun} detected: " + "; ".join(problems))
    assert count is not None
    if recipient is None:
        return count, key_store_id, None
    assert document is not None and algorithm is not None
    return count, key_store_id, (document, algorithm)


def _recipient_key(public_key: bytes | None) -> rsa.RSAPublicKey:
    if public_key is None:
        raise KmsServiceError("ValidationException", "The attestation document in Recipient has no public_key",
                              reason="public_key null")
    try:
        # KMS takes DER only here (the document carries bytes); the rules are the CMS code's and the enclave's.
        return load_rsa_spki(public_key, what="The public_key in the attestation document")
    except RsaKeyError as exc:
        raise KmsServiceError("ValidationException", str(exc),
                              reason=f"public_key of {len(public_key)} bytes: {exc.reason}") from None


def _check_key_store(key_store_id: str, stores: Mapping[str, CustomKeyStore]) -> None:
    store = stores.get(key_store_id)
    if store is None:
        raise KmsServiceError("CustomKeyStoreNotFoundException",
                              f"Custom key store '{key_store_id}' does not exist")
    if store.type == "EXTERNAL_KEY_STORE":
        raise KmsServiceError("UnsupportedOperationException",
                              f"{key_store_id} is an external key store. GenerateRandom does not support external "
                              "key stores")
    if store.connection_state != "CONNECTED":
        raise KmsServiceError("CustomKeyStoreInvalidStateException",
                              f"Custom key store {key_store_id} is not connected (ConnectionState is "
                              f"{store.connection_state})")


def _serialization(message: str) -> KmsServiceError:
    return KmsServiceError("SerializationException", message)


def _null(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def _value(value: object, path: str, constraint: str) -> str:
    shown = clip(str(value), _SHOWN_STRING + 3)  # the first _SHOWN_STRING characters, then "..."
    return f"Value '{shown}' at '{path}' failed to satisfy constraint: {constraint}"
