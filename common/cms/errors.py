"""Errors raised by :mod:`nitrokit.cms`.

Catch :class:`CmsError` for "this envelope could not be used" (its size included). The subclasses tell apart
the three cases a caller may want to handle differently:

- :class:`CmsFormatError`: the bytes are not an envelope of the one shape AWS KMS produces (the message
  names what differs);
- :class:`RecipientMismatchError`: a well-formed envelope addressed to another key (checked before any RSA
  operation, from public data only);
- :class:`CmsDecryptionError`: everything after those two checks. It always carries the same message, so a
  caller (or an attacker watching it) cannot tell a bad wrapped key from a bad padding.

:class:`UnsupportedKeyError` is a usage error: the key handed in is not an RSA 2048/3072/4096 key.
:class:`CmsInputTooLargeError` (an envelope over ``MAX_ENVELOPE_SIZE``, a plaintext over
``MAX_PLAINTEXT_SIZE``) is also an :class:`~nitrokit.errors.InputTooLargeError`, for code that handles every
size cap alike.
Messages never contain key material or plaintext.
"""

from __future__ import annotations

from nitrokit.errors import InputTooLargeError, NitrokitError, UsageError

__all__ = [
    "CmsDecryptionError",
    "CmsError",
    "CmsFormatError",
    "CmsInputTooLargeError",
    "RecipientMismatchError",
    "UnsupportedKeyError",
]


class CmsError(NitrokitError):
    """Base class of every error :mod:`nitrokit.cms` raises on purpose."""


class CmsFormatError(CmsError, ValueError):
    """The input is not a CMS EnvelopedData of the shape AWS KMS emits for CiphertextForRecipient."""


class CmsInputTooLargeError(InputTooLargeError, CmsError):
    """An envelope or a plaintext is over its size cap; refused before any parsing or RSA operation."""

    # InputTooLargeError first in the MRO: its (what, size, limit) message goes up through CmsError.


class RecipientMismatchError(CmsError):
    """The envelope's recipient identifier is not the SHA-256 of this key's SubjectPublicKeyInfo."""

    def __init__(self, envelope_rid: bytes, key_id: bytes) -> None:
        super().__init__(
            f"envelope is for recipient key id {envelope_rid.hex()}, not this key ({key_id.hex()})"
        )
        self.envelope_rid = envelope_rid
        self.key_id = key_id


class CmsDecryptionError(CmsError):
    """The envelope could not be opened with this key. Deliberately says nothing about why."""

    MESSAGE = "cannot decrypt the envelope with this key"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class UnsupportedKeyError(CmsError, UsageError):
    """The key is not an RSA key of 2048, 3072 or 4096 bits (or not a SubjectPublicKeyInfo)."""
