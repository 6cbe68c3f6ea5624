"""Read AWS Nitro Enclaves image files (EIF) and compute the PCRs an enclave booted from them will report.

The public API::

    from nitrokit.eif import describe_eif

    description = describe_eif("enclave.eif")        # path, bytes or a seekable binary file
    description.measurements.pcr0                     # 48 bytes; also pcr1, pcr2, pcr8 (signed images)
    description.measurements.to_nitro_cli()           # {"HashAlgorithm": "Sha384 { ... }", "PCR0": "...", ...}
    description.measurements.as_dict()                # {0: ..., 1: ..., 2: ...[, 8: ...]} for policies

The values equal ``nitro-cli build-enclave`` / ``describe-eif`` output: PCR0 = SHA-384(48 zero bytes ||
SHA-384(kernel || cmdline || all ramdisks)), PCR1 the same over kernel, cmdline and the first ramdisk, PCR2
over the remaining ramdisks, PCR8 over the DER signing certificate. The reader is strict (the CRC, every
offset and size, section order and counts are checked; nothing past the declared end is read) and streams
the file in bounded chunks. See docs/enclave-images.md and :mod:`nitrokit.eif._parse` for the exact rules.

Errors are :class:`~nitrokit.eif.errors.EifError` subclasses (all :class:`~nitrokit.errors.NitrokitError`).
"""

from __future__ import annotations

from nitrokit.eif._parse import (
    DEFAULT_MAX_EIF_BYTES,
    EIF_MAGIC,
    HEADER_SIZE,
    MAX_CMDLINE_BYTES,
    MAX_METADATA_BYTES,
    MAX_SECTIONS,
    MAX_SIGNATURE_SECTION_BYTES,
    SECTION_HEADER_SIZE,
    SUPPORTED_VERSIONS,
    describe_eif,
)
from nitrokit.eif._signature import pcr8_for_certificate, pcr_extend_from_zero
from nitrokit.eif.errors import (
    EifCrcError,
    EifError,
    EifHeaderError,
    EifLayoutError,
    EifMagicError,
    EifSectionError,
    EifSignatureError,
    EifTooLargeError,
    EifTruncatedError,
    EifVersionError,
)
from nitrokit.eif.models import (
    NITRO_CLI_HASH_ALGORITHM,
    EifDescription,
    EifHeader,
    EifSection,
    EifSignature,
    Measurements,
    SectionType,
)

__all__ = [
    "DEFAULT_MAX_EIF_BYTES",
    "EIF_MAGIC",
    "HEADER_SIZE",
    "MAX_CMDLINE_BYTES",
    "MAX_METADATA_BYTES",
    "MAX_SECTIONS",
    "MAX_SIGNATURE_SECTION_BYTES",
    "NITRO_CLI_HASH_ALGORITHM",
    "SECTION_HEADER_SIZE",
    "SUPPORTED_VERSIONS",
    "EifCrcError",
    "EifDescription",
    "EifError",
    "EifHeader",
    "EifHeaderError",
    "EifLayoutError",
    "EifMagicError",
    "EifSection",
    "EifSectionError",
    "EifSignature",
    "EifSignatureError",
    "EifTooLargeError",
    "EifTruncatedError",
    "EifVersionError",
    "Measurements",
    "SectionType",
    "describe_eif",
    "pcr8_for_certificate",
    "pcr_extend_from_zero",
]
