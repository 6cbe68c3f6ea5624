"""An EIF writer for tests, written from the format description and independent of nitrokit.eif.

It lays files out as aws-nitro-enclaves-image-format's ``EifBuilder`` does (header, then kernel, cmdline,
metadata, ramdisks, signature back to back; section_offsets point at each 12-byte section header; CRC32 over
everything but the CRC field) and can also produce the broken files the reader must refuse. It never imports
nitrokit.eif, so the tests' expected PCRs are computed independently of the code under test.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

KERNEL, CMDLINE, RAMDISK, SIGNATURE, METADATA = 1, 2, 3, 4, 5
HEADER_SIZE = 548
SECTION_HEADER_SIZE = 12
SLOTS = 32


@dataclass
class Section:
    type: int
    data: bytes
    flags: int = 0
    # Overrides for building inconsistent files.
    header_size: int | None = None


@dataclass
class Layout:
    sections: list[Section]
    version: int = 4
    flags: int = 0
    default_memory: int = 1024 * 1024 * 1024
    default_cpus: int = 2
    reserved: int = 0
    unused: int = 0
    magic: bytes = b".eif"
    num_sections: int | None = None
    offsets: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    crc: int | None = None
    trailing: bytes = b""


def assemble(layout: Layout) -> bytes:
    """Serialize ``layout``; overrides in it let a test build inconsistent files on purpose."""
    offsets = [0] * SLOTS
    sizes = [0] * SLOTS
    body = bytearray()
    position = HEADER_SIZE
    for i, section in enumerate(layout.sections):
        if i < SLOTS:
            offsets[i] = position
            sizes[i] = len(section.data)
        size_field = len(section.data) if section.header_size is None else section.header_size
        body += struct.pack(">HHQ", section.type, section.flags, size_field) + section.data
        position += SECTION_HEADER_SIZE + len(section.data)
    for i, value in layout.offsets.items():
        offsets[i] = value
    for i, value in layout.sizes.items():
        sizes[i] = value
    count = len(layout.sections) if layout.num_sections is None else layout.num_sections
    head = struct.pack(">4sHHQQHH", layout.magic, layout.version, layout.flags, layout.default_memory,
                       layout.default_cpus, layout.reserved, count)
    head += struct.pack(f">{SLOTS}Q", *offsets) + struct.pack(f">{SLOTS}Q", *sizes) + struct.pack(">I", layout.unused)
    crc = zlib.crc32(bytes(body), zlib.crc32(head)) if layout.crc is None else layout.crc
    return head + struct.pack(">I", crc) + bytes(body) + layout.trailing


def fix_crc(data: bytes) -> bytes:
    """Recompute the CRC of a (possibly mutated) file, so the reader gets past the CRC check."""
    if len(data) < HEADER_SIZE:
        return data
    crc = zlib.crc32(data[HEADER_SIZE:], zlib.crc32(data[: HEADER_SIZE - 4]))
    return data[: HEADER_SIZE - 4] + struct.pack(">I", crc) + data[HEADER_SIZE:]


def metadata_json(name: str = "nitrokit-test") -> bytes:
    return json.dumps({
        "ImageName": name,
        "ImageVersion": "1.0",
        "BuildMetadata": {"BuildTime": "2024-01-01T00:00:00+00:00", "BuildTool": "nitrokit tests",
                          "BuildToolVersion": "0", "OperatingSystem": "linux", "KernelVersion": "6.1"},
        "DockerInfo": {},
        "CustomMetadata": {},
    }).encode()


def image_layout(*, kernel: bytes, cmdline: bytes, ramdisks: Sequence[bytes], metadata: bytes | None = None,
                 signature: bytes | None = None, version: int = 4, flags: int = 0) -> Layout:
    """Sections in nitro-cli's order: kernel, cmdline, [metadata], ramdisks..., [signature]."""
    sections = [Section(KERNEL, kernel), Section(CMDLINE, cmdline)]
    if metadata is not None:
        sections.append(Section(METADATA, metadata))
    sections += [Section(RAMDISK, r) for r in ramdisks]
    if signature is not None:
        sections.append(Section(SIGNATURE, signature))
    return Layout(sections=sections, version=version, flags=flags)


def build_eif(**kwargs: object) -> bytes:
    return assemble(image_layout(**kwargs))  # type: ignore[arg-type]


# --- expected measurements, straight from the definitions ------------------------------------------------

def expected_pcrs(*, kernel: bytes, cmdline: bytes, ramdisks: Sequence[bytes],
                  certificate_der: bytes | None = None) -> dict[str, str]:
    def extend(data: bytes) -> str:
        return hashlib.sha384(b"\x00" * 48 + hashlib.sha384(data).digest()).hexdigest()

    out = {
        "PCR0": extend(kernel + cmdline + b"".join(ramdisks)),
        "PCR1": extend(kernel + cmdline + ramdisks[0]),
        "PCR2": extend(b"".join(ramdisks[1:])),
    }
    if certificate_der is not None:
        out["PCR8"] = extend(certificate_der)
    return out


# --- signing, as nitro-cli does it ---------------------------------------------------------------------------

_CURVE_PARAMS = {"secp256r1": (-7, hashes.SHA256(), 32), "secp384r1": (-35, hashes.SHA384(), 48),
                 "secp521r1": (-36, hashes.SHA512(), 66)}


def signing_identity(curve: ec.EllipticCurve | None = None, *, cn: str = "nitrokit test signer"
                     ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(curve or ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + datetime.timedelta(days=365))
            .sign(key, hashes.SHA384()))
    return key, cert


def cose_sign1(key: ec.EllipticCurvePrivateKey, payload: bytes, *, alg: int | None = None,
               protected_extra: dict[int, object] | None = None, tagged: bool = False) -> bytes:
    default_alg, digest, size = _CURVE_PARAMS[key.curve.name]
    header: dict[int, object] = {1: default_alg if alg is None else alg}
    header.update(protected_extra or {})
    protected = cbor2.dumps(header)
    to_sign = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(digest)))
    message = [protected, {}, payload, r.to_bytes(size, "big") + s.to_bytes(size, "big")]
    return cbor2.dumps(cbor2.CBORTag(18, message) if tagged else message)


def pcr_payload(pcr_value: bytes, *, index: int = 0) -> bytes:
    # serde_cbor: struct -> map with field names; Vec<u8> -> array of integers.
    return cbor2.dumps({"register_index": index, "register_value": list(pcr_value)})


def signature_section(certificate: x509.Certificate, cose: bytes, *, as_bytes: bool = False) -> bytes:
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    if as_bytes:
        entry: dict[str, object] = {"signing_certificate": pem, "signature": cose}
    else:
        entry = {"signing_certificate": list(pem), "signature": list(cose)}
    return cbor2.dumps([entry])


def signed_eif(*, kernel: bytes, cmdline: bytes, ramdisks: Sequence[bytes], key: ec.EllipticCurvePrivateKey,
               certificate: x509.Certificate, metadata: bytes | None = None) -> bytes:
    pcr0 = bytes.fromhex(expected_pcrs(kernel=kernel, cmdline=cmdline, ramdisks=ramdisks)["PCR0"])
    section = signature_section(certificate, cose_sign1(key, pcr_payload(pcr0)))
    return build_eif(kernel=kernel, cmdline=cmdline, ramdisks=ramdisks, metadata=metadata, signature=section)
