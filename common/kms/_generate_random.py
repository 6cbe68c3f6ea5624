"""GenerateRandom, as the KMS API reference and botocore's service model define it.

Request members (all optional in the model; NumberOfBytes is required in prose and a missing value is a
ValidationException here, never a crash): ``NumberOfBytes`` integer 1..1024, ``CustomKeyStoreId`` string 1..64,
``Recipient`` {``AttestationDocument`` blob 1..262144 bytes, ``KeyEncryptionAlgorithm`` "RSAES_OAEP_SHA_256"}
(the numbers are :mod:`nitrokit.kms_api`'s, shared with the wire protocol and the enclave client). Unknown
members are ignored, as AWS JSON services do.

Steps, each with the error it answers:

1. types and base64 (SerializationException), then constraints (ValidationException, AWS's message style);
2. with Recipient: the attestation document is checked by :mod:`nitrokit.kms._recipient` (shared with Decrypt
   and GenerateDataKey): verified against the configured root at the current time, its ``public_key`` a DER
   RSA SubjectPublicKeyInfo of 2048/3072/4096 bits (ValidationException naming what failed);
3. attestation conditions and the recipient-required switch (AccessDeniedException);
4. the custom key store, if named (CustomKeyStoreNotFoundException, UnsupportedOperationException for an
   external key store, CustomKeyStoreInvalidStateException when not CONNECTED);
5. the answer: ``Plaintext``, or with Recipient only ``CiphertextForRecipient`` (the CMS envelope).

Debug-mode documents (PCRs all zero) pass step 2, as they do at KMS; conditions on PCRs then refuse them.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from nitrokit.cms import encrypt_for_recipient
from nitrokit.kms._members import Members, RecipientRequest
from nitrokit.kms._recipient import Context, verify_recipient
from nitrokit.kms.conditions import GENERATE_RANDOM, context_from_pcrs
from nitrokit.kms.config import CustomKeyStore
from nitrokit.kms.errors import KmsServiceError
from nitrokit.kms_api import (
    GENERATE_RANDOM_MAX_BYTES,
    GENERATE_RANDOM_MIN_BYTES,
    MAX_CUSTOM_KEY_STORE_ID_CHARS,
    MIN_CUSTOM_KEY_STORE_ID_CHARS,
)

__all__ = ["Context", "generate_random"]


def generate_random(params: Mapping[str, Any], context: Context) -> dict[str, str]:
    """Run GenerateRandom on parsed JSON ``params``; return the JSON answer or raise KmsServiceError."""
    count, key_store_id, request = _read(params)
    recipient = verify_recipient(request[0], context) if request is not None else None

    denied = None
    if context.recipient_required and recipient is None:
        denied = "a Recipient is required"
    elif context.conditions is not None:
        denied = context.conditions.evaluate(context_from_pcrs(recipient.pcrs if recipient else None),
                                             action=GENERATE_RANDOM)
    if denied is not None:
        raise KmsServiceError("AccessDeniedException",
                              f"User: {context.caller} is not authorized to perform: kms:GenerateRandom because no "
                              "identity-based policy allows the kms:GenerateRandom action",
                              reason=denied)

    if key_store_id is not None:
        _check_key_store(key_store_id, context.key_stores)

    plaintext = os.urandom(count)
    if recipient is None:
        return {"Plaintext": base64.b64encode(plaintext).decode("ascii")}
    envelope = encrypt_for_recipient(plaintext, recipient.public_key)
    return {"CiphertextForRecipient": base64.b64encode(envelope).decode("ascii")}


def _read(params: Mapping[str, Any]) -> tuple[int, str | None, RecipientRequest | None]:
    members = Members(params)
    count = members.integer("NumberOfBytes", required=True, minimum=GENERATE_RANDOM_MIN_BYTES,
                            maximum=GENERATE_RANDOM_MAX_BYTES)
    key_store_id = members.string("CustomKeyStoreId", min_len=MIN_CUSTOM_KEY_STORE_ID_CHARS,
                                  max_len=MAX_CUSTOM_KEY_STORE_ID_CHARS)
    recipient = members.recipient()
    members.check()
    assert count is not None
    return count, key_store_id, recipient


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
