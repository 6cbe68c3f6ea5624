"""The AWS KMS API's published limits that more than one part of nitrokit checks, each stated once.

The wire protocol's request shapes (:mod:`nitrokit.wire.kms`), the simulated KMS (:mod:`nitrokit.kms`), the
enclave's client and the command lines all take these values from here, so a change to one limit changes
every check and every help text. The numbers are the GenerateRandom entry of the KMS API reference and
botocore's service model. Importing this module loads nothing else.
"""

from __future__ import annotations

__all__ = [
    "GENERATE_RANDOM_MAX_BYTES",
    "GENERATE_RANDOM_MIN_BYTES",
    "KEY_ENCRYPTION_ALGORITHMS",
    "MAX_ATTESTATION_DOCUMENT_BYTES",
    "MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES",
    "MAX_CUSTOM_KEY_STORE_ID_CHARS",
    "MAX_PLAINTEXT_BYTES",
    "MIN_CUSTOM_KEY_STORE_ID_CHARS",
    "NUMBER_OF_BYTES_RANGE",
    "RSAES_OAEP_SHA_256",
]

#: GenerateRandom ``NumberOfBytes``: an integer from 1 to 1024.
GENERATE_RANDOM_MIN_BYTES = 1
GENERATE_RANDOM_MAX_BYTES = 1024
#: "1..1024", for help texts and messages.
NUMBER_OF_BYTES_RANGE = f"{GENERATE_RANDOM_MIN_BYTES}..{GENERATE_RANDOM_MAX_BYTES}"
#: ``CustomKeyStoreId``: a string of 1 to 64 characters.
MIN_CUSTOM_KEY_STORE_ID_CHARS = 1
MAX_CUSTOM_KEY_STORE_ID_CHARS = 64
#: ``Recipient.AttestationDocument``: a blob of 1 to 262144 bytes (real documents are about 4.4 KB).
MAX_ATTESTATION_DOCUMENT_BYTES = 262144
#: ``Recipient.KeyEncryptionAlgorithm``: the one value the enum has.
RSAES_OAEP_SHA_256 = "RSAES_OAEP_SHA_256"
KEY_ENCRYPTION_ALGORITHMS = (RSAES_OAEP_SHA_256,)
#: The response blobs: ``Plaintext`` 1..4096 bytes, ``CiphertextForRecipient`` 1..6144 bytes.
MAX_PLAINTEXT_BYTES = 4096
MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES = 6144
