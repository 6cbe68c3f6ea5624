"""What reading an EIF returns: the header, the section table, the measurements and the signature."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

EIF_FLAG_ARM64 = 0x1
# nitro-cli prints the Rust hasher's Debug form here; tools that parse its output compare this string.
NITRO_CLI_HASH_ALGORITHM = "Sha384 { ... }"


class SectionType(enum.IntEnum):
    """EIF section types (``EifSectionType`` in aws-nitro-enclaves-image-format; 0 is "invalid")."""

    KERNEL = 1
    CMDLINE = 2
    RAMDISK = 3
    SIGNATURE = 4
    METADATA = 5

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, kw_only=True)
class EifHeader:
    """The fixed 548-byte header. ``crc32`` is the stored value (it was checked against the contents)."""

    version: int
    flags: int
    default_memory: int
    default_cpus: int
    section_count: int
    crc32: int

    @property
    def arm64(self) -> bool:
        """True if the image is for aarch64 (flag bit 0), False for x86_64."""
        return bool(self.flags & EIF_FLAG_ARM64)


@dataclass(frozen=True, kw_only=True)
class EifSection:
    """One section: ``offset`` is where its 12-byte section header starts, ``size`` the data length after it."""

    index: int
    type: SectionType
    offset: int
    size: int

    @property
    def data_offset(self) -> int:
        return self.offset + 12


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """PCR values as the Nitro hypervisor will report them for this image (48-byte SHA-384 values).

    ``pcr8`` is None for an unsigned image.
    """

    pcr0: bytes
    pcr1: bytes
    pcr2: bytes
    pcr8: bytes | None = None

    def as_dict(self) -> dict[int, bytes]:
        """The PCRs by index, ready for :class:`nitrokit.attestation.Policy` or the KMS key policy builder."""
        pcrs = {0: self.pcr0, 1: self.pcr1, 2: self.pcr2}
        if self.pcr8 is not None:
            pcrs[8] = self.pcr8
        return pcrs

    def to_nitro_cli(self) -> dict[str, str]:
        """The ``Measurements`` object exactly as ``nitro-cli build-enclave`` and ``describe-eif`` print it."""
        out = {"HashAlgorithm": NITRO_CLI_HASH_ALGORITHM}
        for index, value in self.as_dict().items():
            out[f"PCR{index}"] = value.hex()
        return out


@dataclass(frozen=True, kw_only=True)
class EifSignature:
    """The signature section of a signed image.

    ``verified`` is True when the COSE_Sign1 signature was checked with the certificate's key and its payload
    is this image's PCR0 (:func:`describe_eif` raises otherwise); False when the caller asked not to check.
    The certificate's validity dates are reported, not enforced (``nitro-cli run-enclave`` enforces them).
    """

    certificate: x509.Certificate
    algorithm: str
    verified: bool

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def certificate_sha384(self) -> bytes:
        """SHA-384 of the DER certificate: the value PCR8 extends."""
        return hashlib.sha384(self.certificate_der).digest()

    def summary(self) -> dict[str, Any]:
        cert = self.certificate
        return {
            "Subject": cert.subject.rfc4514_string(),
            "Issuer": cert.issuer.rfc4514_string(),
            "NotBefore": _iso(cert.not_valid_before_utc),
            "NotAfter": _iso(cert.not_valid_after_utc),
            "Sha384": self.certificate_sha384.hex(),
            "Algorithm": self.algorithm,
        }


@dataclass(frozen=True, kw_only=True)
class EifDescription:
    """Everything :func:`describe_eif` established about one file."""

    file_size: int
    header: EifHeader
    sections: tuple[EifSection, ...]
    measurements: Measurements
    cmdline: bytes
    metadata: Mapping[str, Any] | None
    signature: EifSignature | None

    @property
    def is_signed(self) -> bool:
        return self.signature is not None

    @property
    def ramdisk_count(self) -> int:
        return sum(1 for s in self.sections if s.type is SectionType.RAMDISK)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary. ``Measurements`` has nitro-cli's exact shape; the other keys follow
        ``nitro-cli describe-eif`` where it has one (EifVersion, IsSigned, CheckCRC, ArmKernel, MetaData)."""
        out: dict[str, Any] = {
            "Measurements": self.measurements.to_nitro_cli(),
            "EifVersion": self.header.version,
            "IsSigned": self.is_signed,
            "CheckCRC": True,
            "ArmKernel": self.header.arm64,
            "DefaultMemory": self.header.default_memory,
            "DefaultCpus": self.header.default_cpus,
            "Cmdline": self.cmdline.decode("utf-8", errors="replace"),
            "Sections": [
                {"Index": s.index, "Type": s.type.label, "Offset": s.offset, "Size": s.size} for s in self.sections
            ],
        }
        if self.signature is not None:
            out["SignatureCheck"] = self.signature.verified
            out["SigningCertificate"] = self.signature.summary()
        if self.metadata is not None:
            out["MetaData"] = dict(self.metadata)
        return out


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
