"""CMS EnvelopedData as AWS KMS uses it for ``CiphertextForRecipient``.

When a Nitro enclave calls KMS (Decrypt, GenerateDataKey, GenerateRandom, ...) with a ``Recipient``
(its attestation document), KMS does not return the plaintext: it returns ``CiphertextForRecipient``, a CMS
(RFC 5652) EnvelopedData encrypted to the RSA public key in the attestation document. This package reads,
opens and builds exactly that shape, and refuses every other:

- BER, indefinite lengths on the outer containers; EnvelopedData v2, no originatorInfo/unprotectedAttrs;
- exactly one KeyTransRecipientInfo v2 whose rid is ``[0]`` SHA-256(recipient's DER SubjectPublicKeyInfo);
- rsaesOaep with SHA-256 and MGF1-SHA-256, empty label (NULL hash parameters present or absent);
- id-data content, aes256-CBC with a 16-byte IV, PKCS#7 padding, content inline as constructed ``[0]``
  OCTET STRING chunks or a primitive ``[0]``.

The two calls other parts of nitrokit rely on (keep them stable)::

    encrypt_for_recipient(plaintext: bytes, recipient_public_key: bytes | RSAPublicKey) -> bytes
        # simulated KMS: recipient_public_key is the attestation document's public_key (DER SPKI)
    decrypt(envelope: bytes | EnvelopedData, private_key: RSAPrivateKey) -> bytes
        # enclave client: opens the CiphertextForRecipient with the enclave's key

and for inspection ``parse_enveloped_data(data) -> EnvelopedData`` and ``recipient_key_id(public_key)``.

Errors (all :class:`~nitrokit.errors.NitrokitError`): :class:`CmsFormatError` (names what differs),
:class:`RecipientMismatchError` (another key's envelope; found before any RSA operation),
:class:`CmsDecryptionError` (one message for every later failure), :class:`UnsupportedKeyError` (not RSA
2048/3072/4096), :class:`CmsInputTooLargeError` (over :data:`MAX_ENVELOPE_SIZE` or :data:`MAX_PLAINTEXT_SIZE`;
also an :class:`~nitrokit.errors.InputTooLargeError`). ``except CmsError`` catches all of them.

The envelope is not authenticated: anyone with the public key can make one, and AES-CBC is malleable.
See docs/cms.md.
"""

from __future__ import annotations

from nitrokit.cms._build import MAX_PLAINTEXT_SIZE, encrypt_for_recipient
from nitrokit.cms._decrypt import decrypt
from nitrokit.cms._keys import SUPPORTED_RSA_BITS, recipient_key_id
from nitrokit.cms._model import EnvelopedData
from nitrokit.cms._parse import MAX_ENVELOPE_SIZE, parse_enveloped_data
from nitrokit.cms.errors import (
    CmsDecryptionError,
    CmsError,
    CmsFormatError,
    CmsInputTooLargeError,
    RecipientMismatchError,
    UnsupportedKeyError,
)

__all__ = [
    "MAX_ENVELOPE_SIZE",
    "MAX_PLAINTEXT_SIZE",
    "SUPPORTED_RSA_BITS",
    "CmsDecryptionError",
    "CmsError",
    "CmsFormatError",
    "CmsInputTooLargeError",
    "EnvelopedData",
    "RecipientMismatchError",
    "UnsupportedKeyError",
    "decrypt",
    "encrypt_for_recipient",
    "parse_enveloped_data",
    "recipient_key_id",
]
