"""Errors raised while reading Enclave Image Format (EIF) files.

Catch :class:`EifError` for "this file is not an EIF nitrokit can measure". The subclasses say which rule
the file broke, so a caller (or a CI job comparing PCRs) can report it precisely::

    try:
        description = describe_eif("enclave.eif")
    except EifCrcError:        # the file was corrupted or edited after it was built
        ...
    except EifError:           # anything else about the file
        ...

Messages name the field or section and, where it helps, the byte offset. :class:`EifTooLargeError` is also an
:class:`~nitrokit.errors.InputTooLargeError`, so code that handles every size cap the same way still can.
"""

from __future__ import annotations

from nitrokit.errors import InputTooLargeError, NitrokitError

__all__ = [
    "EifCrcError",
    "EifError",
    "EifHeaderError",
    "EifLayoutError",
    "EifMagicError",
    "EifSectionError",
    "EifSignatureError",
    "EifTooLargeError",
    "EifTruncatedError",
    "EifVersionError",
]


class EifError(NitrokitError):
    """Base class: the file was refused. ``offset`` is the byte offset the problem was found at, if any."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        self.offset = offset
        super().__init__(f"{message} (at byte {offset})" if offset is not None else message)


class EifMagicError(EifError):
    """The file does not start with the EIF magic ``.eif``."""


class EifVersionError(EifError):
    """The header's format version is not one nitrokit reads (2, 3 or 4)."""


class EifHeaderError(EifError):
    """A header field has a value the format does not allow (flags, reserved fields, section count)."""


class EifLayoutError(EifError):
    """Section offsets and sizes do not describe the file: gaps, overlaps, mismatches or trailing bytes."""


class EifTruncatedError(EifLayoutError):
    """The file ends before the header or a section it declares."""


class EifSectionError(EifError):
    """A section header or the set of sections is not valid (type, flags, order, duplicates, contents)."""


class EifCrcError(EifError):
    """The CRC32 stored in the header does not match the file's contents."""

    def __init__(self, *, stored: int, computed: int) -> None:
        super().__init__(f"CRC32 mismatch: header has {stored:#010x}, contents give {computed:#010x}")
        self.stored = stored
        self.computed = computed


class EifSignatureError(EifError):
    """The signature section is malformed, or its PCR0 signature does not verify or does not match."""


class EifTooLargeError(EifError, InputTooLargeError):
    """The file, or a section nitrokit keeps in memory, is over its size cap."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        InputTooLargeError.__init__(self, what, size, limit)
        self.offset = None
