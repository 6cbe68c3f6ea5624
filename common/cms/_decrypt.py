"""Opening an envelope with the recipient's RSA private key."""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from nitrokit.cms._build import CONTENT_KEY_LENGTH, OAEP_SHA256
from nitrokit.cms._keys import check_rsa_size, private_key_id
from nitrokit.cms._model import EnvelopedData
from nitrokit.cms._parse import parse_enveloped_data
from nitrokit.cms.errors import CmsDecryptionError, RecipientMismatchError, UnsupportedKeyError


def decrypt(envelope: bytes | EnvelopedData, private_key: rsa.RSAPrivateKey) -> bytes:
    """Return the plaintext of a CiphertextForRecipient, all of it or nothing.

    ``envelope`` is the raw BER bytes or an already parsed :class:`EnvelopedData`. Raises
    :class:`CmsFormatError` for a bad shape, :class:`RecipientMismatchError` if the envelope names another
    key (before any RSA operation), and :class:`CmsDecryptionError`, always with the same message, for
    every failure after that.
    """
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise UnsupportedKeyError(
            f"private key is a {type(private_key).__name__}, expected an RSAPrivateKey"
        )
    check_rsa_size(private_key, what="private key")
    parsed = envelope if isinstance(envelope, EnvelopedData) else parse_enveloped_data(envelope)
    key_id = private_key_id(private_key)
    if not hmac.compare_digest(parsed.rid, key_id):
        raise RecipientMismatchError(parsed.rid, key_id)

    # RFC 3218 section 2.3.2: an unwrap failure carries on with a random content key through the same AES-CBC
    # and padding check, so a key that does not unwrap takes as long as content that does not unpad (a
    # caller timing the answers would otherwise tell the two apart; bench/bench_cms.py measures it).
    random_key = os.urandom(CONTENT_KEY_LENGTH)
    unwrapped = True
    try:
        content_key = private_key.decrypt(parsed.encrypted_key, OAEP_SHA256)
    except ValueError:
        content_key, unwrapped = random_key, False
    if len(content_key) != CONTENT_KEY_LENGTH:
        content_key, unwrapped = random_key, False
    try:
        decryptor = Cipher(algorithms.AES(content_key), modes.CBC(parsed.iv)).decryptor()
        padded = decryptor.update(parsed.encrypted_content) + decryptor.finalize()
        unpadder = sym_padding.PKCS7(128).unpadder()
        plaintext = unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        unwrapped = False  # raised below, outside this block, so not even __context__ tells the failures apart
    if unwrapped:
        return plaintext
    raise CmsDecryptionError()
