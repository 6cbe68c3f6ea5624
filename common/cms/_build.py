"""Building envelopes byte-shaped like the ones AWS KMS returns (used by the simulated KMS)."""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from nitrokit.cms._keys import load_recipient_key, spki_der
from nitrokit.cms._shape import (
    CHUNK_SIZE,
    CLOSE,
    END_OF_CONTENTS,
    INDEFINITE_CONTEXT_0,
    IV_LENGTH,
    TEMPLATES,
    octet_string_header,
)
from nitrokit.cms.errors import CmsInputTooLargeError
from nitrokit.errors import UsageError

# Large enough for any KMS payload (4 KiB at most) with room to spare, small enough that every envelope
# we build (with an RSA-4096 recipient) stays under MAX_ENVELOPE_SIZE and so opens with our own parser.
MAX_PLAINTEXT_SIZE = 60 * 1024

CONTENT_KEY_LENGTH = 32

OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def encrypt_for_recipient(plaintext: bytes, recipient_public_key: bytes | rsa.RSAPublicKey) -> bytes:
    """Encrypt ``plaintext`` for an RSA key and return the envelope exactly as KMS would shape it.

    ``recipient_public_key`` is DER or PEM SubjectPublicKeyInfo bytes (the attestation document's
    ``public_key`` field) or an ``RSAPublicKey``; RSA 2048, 3072 or 4096 bits, anything else raises
    :class:`~nitrokit.cms.errors.UnsupportedKeyError`. A fresh content key and IV come from ``os.urandom``.
    """
    if isinstance(plaintext, bytearray | memoryview):
        plaintext = bytes(plaintext)
    if not isinstance(plaintext, bytes):
        raise UsageError(f"plaintext must be bytes, not {type(plaintext).__name__}")
    if len(plaintext) > MAX_PLAINTEXT_SIZE:
        raise CmsInputTooLargeError("plaintext", len(plaintext), MAX_PLAINTEXT_SIZE)
    key = load_recipient_key(recipient_public_key)
    rid = hashlib.sha256(spki_der(key)).digest()

    content_key = os.urandom(CONTENT_KEY_LENGTH)
    iv = os.urandom(IV_LENGTH)
    padder = sym_padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(content_key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    encrypted_key = key.encrypt(content_key, OAEP_SHA256)

    template = TEMPLATES[len(encrypted_key)]
    parts = [
        template.head,
        rid,
        template.after_rid,
        encrypted_key,
        template.content_head,
        iv,
        INDEFINITE_CONTEXT_0,
    ]
    for start in range(0, len(ciphertext), CHUNK_SIZE):
        chunk = ciphertext[start : start + CHUNK_SIZE]
        parts += (octet_string_header(len(chunk)), chunk)
    parts += (END_OF_CONTENTS, CLOSE)
    return b"".join(parts)
