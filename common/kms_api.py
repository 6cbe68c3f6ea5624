"""The AWS KMS API's published limits that more than one part of nitrokit checks, each stated once.

The wire protocol's request shapes (:mod:`nitrokit.wire.kms`), the simulated KMS (:mod:`nitrokit.kms`), the
enclave's client and the command lines all take these values from here, so a change to one limit changes
every check and every help text. The numbers are the KMS API reference's (GenerateRandom and the key
operations) and botocore's service model. So are the region and endpoint rules both sides of tunnel mode
use (:func:`kms_endpoint_host`). Importing this module loads nothing beyond the standard library and
:mod:`nitrokit.errors`.
"""

from __future__ import annotations

import os
import re
from types import MappingProxyType

from nitrokit.errors import UsageError
from nitrokit.text import escaped

__all__ = [
    "DATA_KEY_PAIR_SPECS",
    "DATA_KEY_SPEC_BYTES",
    "ENCRYPTION_ALGORITHMS",
    "GENERATE_RANDOM_MAX_BYTES",
    "GENERATE_RANDOM_MIN_BYTES",
    "KEY_AGREEMENT_ALGORITHMS",
    "KEY_ENCRYPTION_ALGORITHMS",
    "KEY_MATERIAL_ID_CHARS",
    "KEY_ORIGINS",
    "MAX_ATTESTATION_DOCUMENT_BYTES",
    "MAX_CIPHERTEXT_BLOB_BYTES",
    "MAX_CIPHERTEXT_FOR_RECIPIENT_BYTES",
    "MAX_CUSTOM_KEY_STORE_ID_CHARS",
    "MAX_GRANT_TOKENS",
    "MAX_GRANT_TOKEN_CHARS",
    "MAX_KEY_ID_CHARS",
    "MAX_PLAINTEXT_BYTES",
    "MAX_PUBLIC_KEY_BYTES",
    "MIN_CUSTOM_KEY_STORE_ID_CHARS",
    "NUMBER_OF_BYTES_RANGE",
    "REGION_PATTERN",
    "RETRYABLE_KMS_CODES",
    "RSAES_OAEP_SHA_256",
    "SYMMETRIC_DEFAULT",
    "check_region",
    "kms_endpoint_host",
    "region_from_environment",
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

# -- the key operations' members (Decrypt, GenerateDataKey, GenerateDataKeyPair, DeriveSharedSecret) -----------

#: ``KeyId`` (request and response): a string of 1 to 2048 characters (key id, key ARN, alias name or alias ARN).
MAX_KEY_ID_CHARS = 2048
#: ``CiphertextBlob`` and ``PrivateKeyCiphertextBlob``: a blob of 1 to 6144 bytes (the model's CiphertextType).
MAX_CIPHERTEXT_BLOB_BYTES = 6144
#: ``PublicKey`` (DeriveSharedSecret's request, GenerateDataKeyPair's response): a blob of 1 to 8192 bytes.
MAX_PUBLIC_KEY_BYTES = 8192
#: ``GrantTokens``: a list of 0 to 10 strings of 1 to 8192 characters each.
MAX_GRANT_TOKENS = 10
MAX_GRANT_TOKEN_CHARS = 8192
#: ``KeyMaterialId`` (responses): exactly 64 characters from 0-9 a-f.
KEY_MATERIAL_ID_CHARS = 64
#: ``EncryptionAlgorithm`` (Decrypt): the model's EncryptionAlgorithmSpec; SYMMETRIC_DEFAULT when not given.
SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPTION_ALGORITHMS = (SYMMETRIC_DEFAULT, "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")
#: ``KeySpec`` (GenerateDataKey) and the number of bytes of the data key each gives.
DATA_KEY_SPEC_BYTES = MappingProxyType({"AES_256": 32, "AES_128": 16})
#: ``KeyPairSpec`` (GenerateDataKeyPair): the model's DataKeyPairSpec.
DATA_KEY_PAIR_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
                       "ECC_SECG_P256K1", "SM2", "ECC_NIST_EDWARDS25519", "ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")
#: ``KeyAgreementAlgorithm`` (DeriveSharedSecret): ECDH, the only value.
KEY_AGREEMENT_ALGORITHMS = ("ECDH",)
#: ``KeyOrigin`` (DeriveSharedSecret's response): the model's OriginType.
KEY_ORIGINS = ("AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")

# -- errors ------------------------------------------------------------------------------------------------------

#: KMS (and generic AWS) error codes worth retrying later: KMS's own transient errors and every throttling
#: code botocore's standard retry mode knows. Any HTTP 5xx answer is retryable too. LimitExceededException is
#: not: in KMS it means a quota on resources, which waiting does not lift.
RETRYABLE_KMS_CODES = frozenset({
    "DependencyTimeoutException",
    "KMSInternalException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
})


# -- regions and endpoints ---------------------------------------------------------------------------------------

#: An AWS region name: us-east-1, eu-central-2, ap-southeast-5, us-gov-west-1, cn-north-1...
REGION_PATTERN = re.compile(r"[a-z]{2}(-[a-z0-9]{1,20}){2,4}")


def check_region(region: object) -> str:
    """``region`` if it is an AWS region name; else a :class:`~nitrokit.errors.UsageError` saying so."""
    if not isinstance(region, str) or not REGION_PATTERN.fullmatch(region):
        shown = escaped(region, 40) if isinstance(region, str) else type(region).__name__
        raise UsageError(f"region {shown!r} is not an AWS region name such as us-east-1")
    return region


def region_from_environment() -> str | None:
    """``AWS_REGION``, else ``AWS_DEFAULT_REGION``, else None (as the AWS SDKs read them)."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def kms_endpoint_host(region: str, *, fips: bool = False) -> str:
    """KMS's endpoint host name in ``region``: ``kms.<region>.amazonaws.com`` (``kms-fips.`` with ``fips``),
    ``.amazonaws.com.cn`` in the China regions. The parent's tunnel target and the name the enclave's TLS
    checks come from here, so they cannot disagree."""
    check_region(region)
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{'kms-fips' if fips else 'kms'}.{region}.{suffix}"
