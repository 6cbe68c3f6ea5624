"""Strict, streaming reader of EIF files that computes PCR0/1/2/8 the way nitro-cli does.

Format (aws-nitro-enclaves-image-format ``src/defs/mod.rs``), all big-endian:

- header, 548 bytes: magic ``.eif``, version u16, flags u16 (bit 0: aarch64), default_mem u64,
  default_cpus u64, reserved u16, num_sections u16, section_offsets [u64; 32], section_sizes [u64; 32],
  unused u32, eif_crc32 u32;
- then each section: a 12-byte section header (section_type u16, flags u16, section_size u64) and its data.
  ``section_offsets[i]`` is where section i's *header* starts; ``section_sizes[i]`` is its data length.

CRC: CRC-32/ISO-HDLC (zlib's crc32) over the header without its last 4 bytes, then every section header and
section data in file order (``EifBuilder::compute_crc``; ``EifReader::from_eif`` recomputes it the same way).

Measurements (``EifReader::from_eif`` and ``utils::get_pcrs``; QEMU's ``hw/core/eif.c`` agrees), each
``SHA-384(48 zero bytes || SHA-384(data))``:

- PCR0 over kernel || cmdline || every ramdisk, in file order;
- PCR1 over kernel || cmdline || the first ramdisk (the bootstrap Amazon provides);
- PCR2 over the other ramdisks (the application; SHA-384 of nothing if there is only one);
- PCR8 over the DER signing certificate of the signature section (see :mod:`nitrokit.eif._signature`).
Metadata and signature sections are covered by the CRC but by no PCR.

Stricter than nitro-cli (which walks sections until EOF and ignores the offset table): every declared
section must start exactly where the previous one ended, the section table must match each section header,
unused table slots must be zero, nothing may follow the last section, the first two sections must be the
kernel and the cmdline, and there must be at least one ramdisk. The file is read in chunks of at most
:data:`READ_CHUNK` bytes and never past the end that the header declares.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import struct
import zlib
from collections.abc import Mapping
from typing import Any, BinaryIO

from nitrokit import strict_json
from nitrokit.eif._signature import (
    check_pcr0_signature,
    parse_signature_section,
    pcr8_for_certificate,
    pcr_extend_from_zero,
)
from nitrokit.eif.errors import (
    EifCrcError,
    EifHeaderError,
    EifLayoutError,
    EifMagicError,
    EifSectionError,
    EifTooLargeError,
    EifTruncatedError,
    EifVersionError,
)
from nitrokit.eif.models import (
    EIF_FLAG_ARM64,
    EifDescription,
    EifHeader,
    EifSection,
    Measurements,
    SectionType,
)
from nitrokit.errors import UsageError

EIF_MAGIC = b".eif"
MAX_SECTIONS = 32
HEADER_SIZE = 548
SECTION_HEADER_SIZE = 12
CRC_OFFSET = HEADER_SIZE - 4
SUPPORTED_VERSIONS = frozenset({2, 3, 4})
# Version history from the image-format crate: v2 added the CRC, v3 the signature, v4 the metadata section.
_MIN_VERSION_FOR = {SectionType.SIGNATURE: 3, SectionType.METADATA: 4}

# Enclave images carry whole container filesystems; 16 GiB is far above any enclave's memory.
DEFAULT_MAX_EIF_BYTES = 16 * 1024**3
READ_CHUNK = 1024 * 1024
# Sections nitrokit keeps in memory. Linux limits the command line to a few KiB; nitro-cli's metadata is a
# small JSON document; a signature section is one PEM certificate and one COSE_Sign1 as integer arrays.
MAX_CMDLINE_BYTES = 64 * 1024
MAX_METADATA_BYTES = 1024 * 1024
MAX_SIGNATURE_SECTION_BYTES = 64 * 1024
_MAX_METADATA_DEPTH = 32
_IN_MEMORY_CAPS = {
    SectionType.CMDLINE: MAX_CMDLINE_BYTES,
    SectionType.METADATA: MAX_METADATA_BYTES,
    SectionType.SIGNATURE: MAX_SIGNATURE_SECTION_BYTES,
}

_HEADER = struct.Struct(f">4sHHQQHH{MAX_SECTIONS}Q{MAX_SECTIONS}QII")
_SECTION_HEADER = struct.Struct(">HHQ")
assert _HEADER.size == HEADER_SIZE
assert _SECTION_HEADER.size == SECTION_HEADER_SIZE

EifSource = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


def describe_eif(source: EifSource, *, max_bytes: int = DEFAULT_MAX_EIF_BYTES,
                 verify_signature: bool = True) -> EifDescription:
    """Read an EIF strictly, check its CRC and compute its PCRs.

    ``source`` is a path, the file's bytes, or a seekable binary file object (read from its start). For a
    signed image the PCR0 signature is verified against the embedded certificate and must sign this image's
    PCR0 (``verify_signature=False`` skips that check; PCR8 is computed either way). Raises an
    :class:`~nitrokit.eif.errors.EifError` subclass naming what is wrong; :class:`EifTooLargeError` if the
    file is over ``max_bytes``.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < HEADER_SIZE:
        raise UsageError(f"max_bytes must be an integer of at least {HEADER_SIZE}")
    if isinstance(source, bytes | bytearray | memoryview):
        return _Reader(io.BytesIO(bytes(source)), max_bytes=max_bytes, verify_signature=verify_signature).run()
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise UsageError(f"{os.fspath(source)!s} is not a regular file")
            return _Reader(handle, max_bytes=max_bytes, verify_signature=verify_signature).run()
    if hasattr(source, "read") and hasattr(source, "seek"):
        return _Reader(source, max_bytes=max_bytes, verify_signature=verify_signature).run()
    raise UsageError(f"expected a path, bytes or a seekable binary file, got {type(source).__name__}")


class _Reader:
    def __init__(self, stream: BinaryIO, *, max_bytes: int, verify_signature: bool) -> None:
        self._stream = stream
        self._max_bytes = max_bytes
        self._verify_signature = verify_signature
        self._crc = 0
        self._image = hashlib.sha384()
        self._bootstrap = hashlib.sha384()
        self._app = hashlib.sha384()

    def run(self) -> EifDescription:
        size = self._stream.seek(0, os.SEEK_END)
        self._stream.seek(0)
        if size > self._max_bytes:
            raise EifTooLargeError("EIF file", size, self._max_bytes)

        raw_header = self._read_exact(HEADER_SIZE, at=0, what="EIF header", file_size=size)
        header, offsets, sizes = _parse_header(raw_header)
        self._crc = zlib.crc32(raw_header[:CRC_OFFSET])
        _check_layout(header, offsets, sizes, file_size=size)

        sections: list[EifSection] = []
        kept: dict[SectionType, bytes] = {}
        ramdisks = 0
        for index in range(header.section_count):
            offset = offsets[index]
            raw = self._read_exact(SECTION_HEADER_SIZE, at=offset, what=f"section {index} header", file_size=size)
            self._crc = zlib.crc32(raw, self._crc)
            section = _parse_section_header(raw, index=index, offset=offset, declared_size=sizes[index])
            _check_section_order(section, header.version, seen=sections)
            sections.append(section)

            if section.type in _IN_MEMORY_CAPS:
                cap = _IN_MEMORY_CAPS[section.type]
                if section.size > cap:
                    raise EifTooLargeError(f"EIF {section.type.label} section", section.size, cap)
                data = self._read_exact(section.size, at=section.data_offset, what=f"section {index} data",
                                        file_size=size)
                self._crc = zlib.crc32(data, self._crc)
                kept[section.type] = data
                if section.type is SectionType.CMDLINE:
                    self._image.update(data)
                    self._bootstrap.update(data)
            elif section.type is SectionType.KERNEL:
                self._stream_section(section, size, self._image, self._bootstrap)
            else:  # ramdisk: the first is Amazon's bootstrap (PCR1), the rest are the application (PCR2).
                second = self._bootstrap if ramdisks == 0 else self._app
                self._stream_section(section, size, self._image, second)
                ramdisks += 1

        if ramdisks == 0:
            raise EifSectionError("no ramdisk section (an enclave image has at least one)")
        if self._crc != header.crc32:
            raise EifCrcError(stored=header.crc32, computed=self._crc)

        pcr0 = pcr_extend_from_zero(self._image.digest())
        measurements = Measurements(pcr0=pcr0, pcr1=pcr_extend_from_zero(self._bootstrap.digest()),
                                    pcr2=pcr_extend_from_zero(self._app.digest()))
        signature = None
        if SectionType.SIGNATURE in kept:
            certificate, cose = parse_signature_section(kept[SectionType.SIGNATURE])
            signature = check_pcr0_signature(certificate, cose, pcr0=pcr0, verify=self._verify_signature)
            measurements = Measurements(pcr0=measurements.pcr0, pcr1=measurements.pcr1, pcr2=measurements.pcr2,
                                        pcr8=pcr8_for_certificate(certificate))

        cmdline = kept[SectionType.CMDLINE]
        if b"\x00" in cmdline:
            raise EifSectionError("cmdline section contains a NUL byte", offset=sections[1].data_offset)
        metadata = _parse_metadata(kept[SectionType.METADATA]) if SectionType.METADATA in kept else None
        return EifDescription(file_size=size, header=header, sections=tuple(sections), measurements=measurements,
                              cmdline=cmdline, metadata=metadata, signature=signature)

    def _stream_section(self, section: EifSection, file_size: int, *hashers: Any) -> None:
        position = section.data_offset
        remaining = section.size
        while remaining:
            chunk = self._read_exact(min(remaining, READ_CHUNK), at=position,
                                     what=f"section {section.index} data", file_size=file_size)
            self._crc = zlib.crc32(chunk, self._crc)
            for hasher in hashers:
                hasher.update(chunk)
            position += len(chunk)
            remaining -= len(chunk)

    def _read_exact(self, count: int, *, at: int, what: str, file_size: int) -> bytes:
        # Sections are read in order and back to back, so no seek is needed; ``at`` is for messages and a
        # consistency check against a stream that moved under us.
        if self._stream.tell() != at:
            self._stream.seek(at)
        parts = []
        got = 0
        while got < count:
            part = self._stream.read(min(count - got, READ_CHUNK))
            if not part:
                break
            parts.append(part)
            got += len(part)
        data = b"".join(parts)
        if len(data) != count:
            raise EifTruncatedError(
                f"{what}: file ends after {at + len(data)} bytes, {at + count} needed (file is {file_size} bytes)",
                offset=at + len(data))
        return data


def _parse_header(raw: bytes) -> tuple[EifHeader, tuple[int, ...], tuple[int, ...]]:
    fields = _HEADER.unpack(raw)
    magic, version, flags, default_memory, default_cpus, reserved, count = fields[:7]
    offsets = tuple(fields[7 : 7 + MAX_SECTIONS])
    sizes = tuple(fields[7 + MAX_SECTIONS : 7 + 2 * MAX_SECTIONS])
    unused, crc32 = fields[-2:]
    if magic != EIF_MAGIC:
        raise EifMagicError(f"not an EIF: magic is {magic!r}, expected {EIF_MAGIC!r}", offset=0)
    if version not in SUPPORTED_VERSIONS:
        raise EifVersionError(f"EIF version {version} is not supported (nitrokit reads versions 2 to 4)", offset=4)
    if flags & ~EIF_FLAG_ARM64:
        raise EifHeaderError(f"header flags {flags:#06x} have bits set that the format does not define", offset=6)
    if reserved:
        raise EifHeaderError(f"reserved header field is {reserved}, expected 0", offset=24)
    if unused:
        raise EifHeaderError(f"unused header field is {unused}, expected 0", offset=CRC_OFFSET - 4)
    if count < 3 or count > MAX_SECTIONS:
        raise EifHeaderError(
            f"header declares {count} sections; an image has 3 to {MAX_SECTIONS} (kernel, cmdline, ramdisks...)",
            offset=26)
    header = EifHeader(version=version, flags=flags, default_memory=default_memory, default_cpus=default_cpus,
                       section_count=count, crc32=crc32)
    return header, offsets, sizes


def _check_layout(header: EifHeader, offsets: tuple[int, ...], sizes: tuple[int, ...], *, file_size: int) -> None:
    """Sections must be back to back from the end of the header and end exactly at the end of the file."""
    for slot in range(header.section_count, MAX_SECTIONS):
        if offsets[slot] or sizes[slot]:
            raise EifLayoutError(f"section table slot {slot} is not zero but the header declares only "
                                 f"{header.section_count} sections", offset=28 + 8 * slot)
    expected = HEADER_SIZE
    for index in range(header.section_count):
        if offsets[index] != expected:
            raise EifLayoutError(f"section {index} is declared at byte {offsets[index]}, but the previous one "
                                 f"ends at byte {expected} (sections must follow each other without gaps)",
                                 offset=28 + 8 * index)
        if sizes[index] > file_size:
            raise EifTruncatedError(f"section {index} is declared as {sizes[index]} bytes, more than the whole "
                                    f"file ({file_size} bytes)", offset=284 + 8 * index)
        expected += SECTION_HEADER_SIZE + sizes[index]
    if expected > file_size:
        raise EifTruncatedError(f"the header declares sections up to byte {expected}, but the file is "
                                f"{file_size} bytes", offset=file_size)
    if expected < file_size:
        raise EifLayoutError(f"{file_size - expected} trailing bytes after the last section", offset=expected)


def _parse_section_header(raw: bytes, *, index: int, offset: int, declared_size: int) -> EifSection:
    type_code, flags, size = _SECTION_HEADER.unpack(raw)
    try:
        section_type = SectionType(type_code)
    except ValueError:
        raise EifSectionError(f"section {index} has type {type_code}, not one of 1..5", offset=offset) from None
    if flags:
        raise EifSectionError(f"section {index} ({section_type.label}) has flags {flags:#06x}, expected 0",
                              offset=offset + 2)
    if size != declared_size:
        raise EifLayoutError(f"section {index} ({section_type.label}) header says {size} bytes, the EIF header "
                             f"says {declared_size}", offset=offset + 4)
    return EifSection(index=index, type=section_type, offset=offset, size=size)


def _check_section_order(section: EifSection, version: int, *, seen: list[EifSection]) -> None:
    expected_first = (SectionType.KERNEL, SectionType.CMDLINE)
    if section.index < len(expected_first):
        if section.type is not expected_first[section.index]:
            raise EifSectionError(f"section {section.index} is a {section.type.label} section, expected the "
                                  f"{expected_first[section.index].label}", offset=section.offset)
        return
    if section.type in expected_first:
        raise EifSectionError(f"section {section.index}: a second {section.type.label} section",
                              offset=section.offset)
    minimum = _MIN_VERSION_FOR.get(section.type)
    if minimum is not None:
        if version < minimum:
            raise EifSectionError(f"section {section.index}: {section.type.label} sections need EIF version "
                                  f"{minimum} or later, the header says {version}", offset=section.offset)
        if any(s.type is section.type for s in seen):
            raise EifSectionError(f"section {section.index}: a second {section.type.label} section",
                                  offset=section.offset)


def _parse_metadata(data: bytes) -> Mapping[str, Any]:
    try:
        value = strict_json.loads(data, what="metadata section", max_bytes=MAX_METADATA_BYTES,
                                  max_depth=_MAX_METADATA_DEPTH)
    except strict_json.StrictJsonError as exc:
        raise EifSectionError(str(exc)) from None
    if not isinstance(value, dict):
        raise EifSectionError("metadata section is not a JSON object")
    return value
