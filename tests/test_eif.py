"""EIF reading: PCRs equal to an independent computation, strict refusal of broken files, bounded reads.

Every image here is built by tests/eif_builder.py (which never imports nitrokit.eif) and every expected PCR is
computed with hashlib straight from the definitions, so a shared mistake would have to be made twice.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import os
import struct
import sys

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nitrokit.cli as cli
from nitrokit.eif import (
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
    SectionType,
    describe_eif,
    pcr8_for_certificate,
)
from nitrokit.eif._parse import READ_CHUNK
from nitrokit.errors import InputTooLargeError, NitrokitError, UsageError
from tests import eif_builder as b
from tests.cli_helpers import only_commands

KERNEL = bytes(range(256)) * 40
CMDLINE = b"reboot=k panic=30 pci=off nomodules console=ttyS0 random.trust_cpu=on"
RAMDISKS = [b"bootstrap ramdisk " * 50, b"customer ramdisk " * 300]


def nitro(kernel: bytes = KERNEL, cmdline: bytes = CMDLINE, ramdisks=RAMDISKS, certificate=None) -> dict[str, str]:
    der = certificate.public_bytes(serialization.Encoding.DER) if certificate is not None else None
    return {"HashAlgorithm": "Sha384 { ... }",
            **b.expected_pcrs(kernel=kernel, cmdline=cmdline, ramdisks=ramdisks, certificate_der=der)}


@pytest.fixture(scope="module")
def signer():
    return b.signing_identity()


@pytest.fixture(scope="module")
def signed(signer) -> bytes:
    key, cert = signer
    return b.signed_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, key=key, certificate=cert,
                        metadata=b.metadata_json())


# --- measurements ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ramdisks", [
    [b"only one ramdisk"],
    RAMDISKS,
    [b"a", b"", b"c" * 1000, os.urandom(3 * READ_CHUNK + 17), b"e"],
], ids=["one-ramdisk", "two-ramdisks", "five-ramdisks-one-large"])
@pytest.mark.parametrize("metadata", [None, b.metadata_json()], ids=["no-metadata", "metadata"])
def test_pcrs_match_independent_computation(ramdisks, metadata):
    data = b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=ramdisks, metadata=metadata)
    description = describe_eif(data)
    assert description.measurements.to_nitro_cli() == nitro(ramdisks=ramdisks)
    assert description.measurements.pcr8 is None
    assert description.signature is None
    assert description.ramdisk_count == len(ramdisks)
    assert description.cmdline == CMDLINE
    assert description.file_size == len(data)
    assert [s.type for s in description.sections][:2] == [SectionType.KERNEL, SectionType.CMDLINE]
    assert (description.metadata is not None) == (metadata is not None)
    out = description.to_json()
    assert next(iter(out)) == "Measurements"
    assert out["CheckCRC"] is True and out["IsSigned"] is False and "PCR8" not in out["Measurements"]


def test_pcr2_of_a_single_ramdisk_image_is_the_extended_empty_hash():
    description = describe_eif(b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=[b"x"]))
    assert description.measurements.pcr2 == hashlib.sha384(bytes(48) + hashlib.sha384(b"").digest()).digest()


def test_every_byte_of_kernel_cmdline_and_ramdisks_is_measured():
    base = describe_eif(b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS)).measurements
    changed_kernel = describe_eif(b.build_eif(kernel=KERNEL[:-1] + b"!", cmdline=CMDLINE, ramdisks=RAMDISKS))
    changed_cmdline = describe_eif(b.build_eif(kernel=KERNEL, cmdline=CMDLINE + b" x", ramdisks=RAMDISKS))
    changed_app = describe_eif(b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=[RAMDISKS[0], b"other"]))
    assert changed_kernel.measurements.pcr0 != base.pcr0 and changed_kernel.measurements.pcr1 != base.pcr1
    assert changed_kernel.measurements.pcr2 == base.pcr2
    assert changed_cmdline.measurements.pcr1 != base.pcr1
    assert changed_app.measurements.pcr0 != base.pcr0 and changed_app.measurements.pcr2 != base.pcr2
    assert changed_app.measurements.pcr1 == base.pcr1
    # Metadata is not measured (only covered by the CRC), as in nitro-cli.
    with_metadata = describe_eif(b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS,
                                             metadata=b.metadata_json("another name")))
    assert with_metadata.measurements == base


@pytest.mark.parametrize("version", [2, 3, 4])
def test_older_versions_without_metadata(version):
    data = b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, version=version)
    description = describe_eif(data)
    assert description.header.version == version
    assert description.measurements.to_nitro_cli() == nitro()


def test_header_fields_are_reported():
    layout = b.image_layout(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, flags=1)
    layout.default_memory, layout.default_cpus = 512 * 1024 * 1024, 4
    description = describe_eif(b.assemble(layout))
    assert description.header.arm64 is True
    assert (description.header.default_memory, description.header.default_cpus) == (512 * 1024 * 1024, 4)
    assert description.to_json()["ArmKernel"] is True


def test_path_bytes_and_file_object_agree(tmp_path, signed):
    path = tmp_path / "image.eif"
    path.write_bytes(signed)
    from_path = describe_eif(path)
    from_str = describe_eif(str(path))
    from_bytes = describe_eif(signed)
    with path.open("rb") as handle:
        from_file = describe_eif(handle)
    assert from_path.measurements == from_str.measurements == from_bytes.measurements == from_file.measurements


# --- signed images -----------------------------------------------------------------------------------------

def test_signed_image_pcr8_and_signature(signed, signer):
    _, cert = signer
    description = describe_eif(signed)
    assert description.measurements.to_nitro_cli() == nitro(certificate=cert)
    assert description.measurements.pcr8 == pcr8_for_certificate(cert)
    assert description.signature is not None and description.signature.verified
    assert description.signature.algorithm == "ES384"
    assert description.signature.certificate_der == cert.public_bytes(serialization.Encoding.DER)
    out = description.to_json()
    assert out["IsSigned"] is True and out["SignatureCheck"] is True
    assert out["SigningCertificate"]["Subject"] == "CN=nitrokit test signer"
    assert out["MetaData"]["ImageName"] == "nitrokit-test"


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()], ids=lambda c: c.name)
def test_signing_curves_nitro_cli_supports(curve):
    key, cert = b.signing_identity(curve)
    description = describe_eif(b.signed_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, key=key,
                                            certificate=cert))
    assert description.signature is not None and description.signature.verified
    assert description.measurements.to_nitro_cli() == nitro(certificate=cert)


def _signed_with(section: bytes) -> bytes:
    return b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, signature=section)


def _pcr0() -> bytes:
    return bytes.fromhex(nitro()["PCR0"])


def test_signature_section_as_byte_strings_and_tagged_cose(signer):
    key, cert = signer
    section = b.signature_section(cert, b.cose_sign1(key, b.pcr_payload(_pcr0()), tagged=True), as_bytes=True)
    description = describe_eif(_signed_with(section))
    assert description.signature is not None and description.signature.verified


def test_signature_by_another_key_is_refused(signer):
    _, cert = signer
    other, _ = b.signing_identity()
    section = b.signature_section(cert, b.cose_sign1(other, b.pcr_payload(_pcr0())))
    with pytest.raises(EifSignatureError, match="does not verify"):
        describe_eif(_signed_with(section))
    # Skipping the check still yields PCR8, and says the signature was not verified.
    description = describe_eif(_signed_with(section), verify_signature=False)
    assert description.signature is not None and description.signature.verified is False
    assert description.measurements.pcr8 == pcr8_for_certificate(cert)


def test_image_changed_after_signing_is_refused(signer):
    key, cert = signer
    section = b.signature_section(cert, b.cose_sign1(key, b.pcr_payload(_pcr0())))
    data = b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=[RAMDISKS[0], b"swapped app"], signature=section)
    with pytest.raises(EifSignatureError, match="changed after it was signed"):
        describe_eif(data)


@pytest.mark.parametrize("payload, match", [
    (b.pcr_payload(bytes(48)), "not this image's PCR0"),
    (b.pcr_payload(bytes.fromhex(nitro()["PCR0"]), index=1), "register_index"),
    (cbor2.dumps({"register_index": 0}), "expected a map"),
    (cbor2.dumps([0, list(bytes(48))]), "expected a map"),
    (cbor2.dumps({"register_index": 0, "register_value": [300] * 48}), "bytes 0..255"),
    (b"\xff", "invalid CBOR"),
])
def test_bad_signed_payloads_are_refused(signer, payload, match):
    key, cert = signer
    section = b.signature_section(cert, b.cose_sign1(key, payload))
    with pytest.raises(EifSignatureError, match=match):
        describe_eif(_signed_with(section))


def test_algorithm_must_match_the_certificate_key(signer):
    key, cert = signer
    section = b.signature_section(cert, b.cose_sign1(key, b.pcr_payload(_pcr0()), alg=-7))
    with pytest.raises(EifSignatureError, match="algorithm -7"):
        describe_eif(_signed_with(section))
    crit = b.signature_section(cert, b.cose_sign1(key, b.pcr_payload(_pcr0()), protected_extra={2: [1]}))
    with pytest.raises(EifSignatureError, match="critical"):
        describe_eif(_signed_with(crit))


def test_rsa_signing_certificate_is_refused(signer):
    key, _ = signer
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, template = b.signing_identity()
    from cryptography.hazmat.primitives import hashes
    rsa_cert = (x509.CertificateBuilder().subject_name(template.subject).issuer_name(template.issuer)
                .public_key(rsa_key.public_key()).serial_number(2).not_valid_before(template.not_valid_before_utc)
                .not_valid_after(template.not_valid_after_utc).sign(rsa_key, hashes.SHA256()))
    section = b.signature_section(rsa_cert, b.cose_sign1(key, b.pcr_payload(_pcr0())))
    with pytest.raises(EifSignatureError, match="not an EC"):
        describe_eif(_signed_with(section))


def _corrupt_certificate(cert, old: bytes, new: bytes) -> bytes:
    der = cert.public_bytes(serialization.Encoding.DER)
    assert old in der
    body = base64.encodebytes(der.replace(old, new, 1)).decode()
    return f"-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n".encode()


def test_undecodable_signing_certificates_are_refused(signer):
    """cryptography decodes lazily: a bad key point or key algorithm must still be a typed error (fuzzing)."""
    key, cert = signer
    point = cert.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    bad_point = point[:-1] + bytes([point[-1] ^ 1])
    id_ec_public_key = bytes.fromhex("06072a8648ce3d0201")
    unknown_algorithm = bytes.fromhex("06072a8648ce3d0209")
    cose = list(b.cose_sign1(key, b.pcr_payload(_pcr0())))
    for pem in (_corrupt_certificate(cert, point, bad_point),
                _corrupt_certificate(cert, id_ec_public_key, unknown_algorithm)):
        with pytest.raises(EifSignatureError, match="cannot be decoded"):
            describe_eif(_signed_with(_entry(list(pem), cose)))
    # A name attribute of a type cryptography refuses raises TypeError (found by fuzzing).
    _, bits_cert = b.signing_identity(cn="\x00bits")
    common_name = bytes.fromhex("0603550403")
    bad_name = _corrupt_certificate(bits_cert, common_name + b"\x0c\x05", common_name + b"\x03\x05")
    with pytest.raises(EifSignatureError, match="cannot be decoded"):
        describe_eif(_signed_with(_entry(list(bad_name), cose)))
    # An X.509 version other than v1..v3 makes cryptography raise InvalidVersion, not ValueError.
    bad_version = _corrupt_certificate(cert, bytes.fromhex("a003020102"), bytes.fromhex("a003020139"))
    with pytest.raises(EifSignatureError, match="not a PEM"):
        describe_eif(_signed_with(_entry(list(bad_version), cose)))


def _entry(cert_field, sig_field) -> bytes:
    return cbor2.dumps([{"signing_certificate": cert_field, "signature": sig_field}])


@pytest.mark.parametrize("make_section, match", [
    (lambda pem, cose: cbor2.dumps({"signing_certificate": list(pem)}), "expected an array"),
    (lambda pem, cose: cbor2.dumps([]), "0 PCR signatures"),
    (lambda pem, cose: cbor2.dumps([{"signing_certificate": list(pem), "signature": list(cose)}] * 2),
     "2 PCR signatures"),
    (lambda pem, cose: cbor2.dumps([[list(pem), list(cose)]]), "expected a map"),
    (lambda pem, cose: cbor2.dumps([{"signing_certificate": list(pem)}]), "entry keys"),
    (lambda pem, cose: _entry(list(b"not a certificate"), list(cose)), "not a PEM"),
    (lambda pem, cose: _entry(list(pem + pem), list(cose)), "2 certificates"),
    (lambda pem, cose: _entry("text", list(cose)), "expected a byte array"),
    (lambda pem, cose: _entry(list(pem), [1, -1]), "bytes 0..255"),
    (lambda pem, cose: _entry(list(pem), list(cose)) + b"\x00", "trailing bytes"),
    (lambda pem, cose: b"\x9f" * 100, "nested deeper|invalid CBOR"),
    (lambda pem, cose: _entry(list(pem), list(cbor2.dumps([b"", {}, b""]))), "4-element"),
    (lambda pem, cose: _entry(list(pem), list(cbor2.dumps(cbor2.CBORTag(17, [b"", {}, b"", b""])))), "tag 17"),
    (lambda pem, cose: _entry(list(pem), list(cbor2.dumps([cbor2.dumps({1: -35}), {}, b"p", b"short"]))),
     "5 bytes"),
])
def test_malformed_signature_sections_are_refused(signer, make_section, match):
    key, cert = signer
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cose = b.cose_sign1(key, b.pcr_payload(_pcr0()))
    with pytest.raises(EifSignatureError, match=match):
        describe_eif(_signed_with(make_section(pem, cose)))


# --- refusing broken files ------------------------------------------------------------------------------

def _section_boundaries(data: bytes) -> list[int]:
    cuts = {0, 1, 3, 4, 27, 28, 100, 543, 544, 547, 548, 549, len(data) - 1}
    position = 548
    while position < len(data):
        size = struct.unpack(">Q", data[position + 4 : position + 12])[0]
        cuts.update({position - 1, position + 1, position + 11, position + 12, position + 13})
        position += 12 + size
    return sorted(c for c in cuts if 0 <= c < len(data))


def test_truncated_files_are_refused_at_every_boundary(signed):
    cuts = _section_boundaries(signed)
    assert len(cuts) > 30
    for cut in cuts:
        with pytest.raises(EifTruncatedError):
            describe_eif(signed[:cut])


def test_truncated_files_are_refused_at_many_offsets(signed):
    for cut in range(0, len(signed), 97):
        with pytest.raises(EifTruncatedError):
            describe_eif(signed[:cut])


def _layout() -> b.Layout:
    return b.image_layout(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, metadata=b.metadata_json())


def _with(**changes: object) -> bytes:
    layout = _layout()
    for name, value in changes.items():
        setattr(layout, name, value)
    return b.assemble(layout)


@pytest.mark.parametrize("data, error, match", [
    (_with(magic=b"EIF."), EifMagicError, "magic"),
    (_with(magic=b"\x00\x00\x00\x00"), EifMagicError, "magic"),
    (_with(version=1), EifVersionError, "version 1"),
    (_with(version=5), EifVersionError, "version 5"),
    (_with(version=0xFFFF), EifVersionError, "65535"),
    (_with(flags=2), EifHeaderError, "flags"),
    (_with(reserved=1), EifHeaderError, "reserved"),
    (_with(unused=7), EifHeaderError, "unused"),
    (_with(num_sections=0), EifHeaderError, "0 sections"),
    (_with(num_sections=2), EifHeaderError, "2 sections"),
    (_with(num_sections=33), EifHeaderError, "33 sections"),
    (_with(num_sections=0xFFFF), EifHeaderError, "65535 sections"),
    (_with(num_sections=6), EifLayoutError, "section 5 is declared at byte 0"),
    (_with(num_sections=4), EifLayoutError, "slot 4 is not zero"),
    (_with(offsets={1: 549}), EifLayoutError, "section 1 is declared at byte 549"),
    (_with(offsets={0: 0}), EifLayoutError, "section 0 is declared at byte 0"),
    (_with(offsets={31: 12}), EifLayoutError, "slot 31"),
    (_with(sizes={31: 12}), EifLayoutError, "slot 31"),
    (_with(sizes={4: 2**64 - 1}), EifTruncatedError, "more than the whole file"),
    (_with(sizes={0: len(KERNEL) - 1}), EifLayoutError, "section 1 is declared"),
    (_with(trailing=b"\x00"), EifLayoutError, "1 trailing bytes"),
    (_with(trailing=b"x" * 5000), EifLayoutError, "5000 trailing bytes"),
    (_with(crc=0), EifCrcError, "CRC32 mismatch"),
])
def test_inconsistent_headers_are_refused(data, error, match):
    with pytest.raises(error, match=match):
        describe_eif(data)


def test_crc_error_reports_both_values():
    good = b.assemble(_layout())
    stored = struct.unpack(">I", good[544:548])[0]
    data = bytearray(good)
    data[-1] ^= 0x01  # last byte of the last ramdisk
    with pytest.raises(EifCrcError) as info:
        describe_eif(bytes(data))
    assert info.value.stored == stored and info.value.computed != stored


def test_crc_covers_the_metadata_section():
    good = b.assemble(_layout())
    index = good.index(b"nitrokit-test")
    with pytest.raises(EifCrcError):
        describe_eif(good[:index] + b"N" + good[index + 1 :])


def _sections(*items) -> bytes:
    return b.assemble(b.Layout(sections=[b.Section(t, d) for t, d in items]))


K, C, R, S, M = b.KERNEL, b.CMDLINE, b.RAMDISK, b.SIGNATURE, b.METADATA


@pytest.mark.parametrize("data, error, match", [
    (_sections((C, CMDLINE), (K, KERNEL), (R, b"r")), EifSectionError, "section 0 is a cmdline"),
    (_sections((K, KERNEL), (R, b"r"), (C, CMDLINE)), EifSectionError, "section 1 is a ramdisk"),
    (_sections((K, KERNEL), (C, CMDLINE), (K, KERNEL), (R, b"r")), EifSectionError, "second kernel"),
    (_sections((K, KERNEL), (C, CMDLINE), (R, b"r"), (C, CMDLINE)), EifSectionError, "second cmdline"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b"{}"), (M, b"{}"), (R, b"r")), EifSectionError, "second metadata"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b"{}")), EifSectionError, "no ramdisk"),
    (_sections((K, KERNEL), (C, CMDLINE), (0, b"")), EifSectionError, "type 0"),
    (_sections((K, KERNEL), (C, CMDLINE), (6, b"")), EifSectionError, "type 6"),
    (_sections((K, KERNEL), (C, CMDLINE), (0xFFFF, b"")), EifSectionError, "type 65535"),
    (_sections((K, KERNEL), (C, b"a\x00b"), (R, b"r")), EifSectionError, "NUL"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b"not json"), (R, b"r")), EifSectionError, "not valid JSON"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b"[1, 2]"), (R, b"r")), EifSectionError, "not a JSON object"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b'{"a": 1, "a": 2}'), (R, b"r")), EifSectionError, "duplicate"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b"\xff\xfe"), (R, b"r")), EifSectionError, "not valid JSON"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b'{"a":' + b"[" * 100 + b"]" * 100 + b"}"), (R, b"r")),
     EifSectionError, "nested deeper"),
    (_sections((K, KERNEL), (C, CMDLINE), (M, b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}"), (R, b"r")),
     EifSectionError, "not valid JSON"),
])
def test_invalid_section_sets_are_refused(data, error, match):
    with pytest.raises(error, match=match):
        describe_eif(data)


def test_sections_newer_than_the_version_are_refused(signer):
    metadata_v3 = b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, metadata=b"{}", version=3)
    with pytest.raises(EifSectionError, match="metadata sections need EIF version 4"):
        describe_eif(metadata_v3)
    signature_v2 = b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, signature=b"\x80", version=2)
    with pytest.raises(EifSectionError, match="signature sections need EIF version 3"):
        describe_eif(signature_v2)
    two = b.assemble(b.Layout(sections=[b.Section(K, KERNEL), b.Section(C, CMDLINE), b.Section(R, b"r"),
                                        b.Section(S, b"\x80"), b.Section(S, b"\x80")]))
    with pytest.raises(EifSectionError, match="second signature"):
        describe_eif(two)


def test_section_header_must_agree_with_the_table():
    layout = _layout()
    layout.sections[3].header_size = len(layout.sections[3].data) + 1
    with pytest.raises(EifLayoutError, match="section 3 \\(ramdisk\\) header says"):
        describe_eif(b.assemble(layout))
    layout = _layout()
    layout.sections[0].flags = 1
    with pytest.raises(EifSectionError, match="flags"):
        describe_eif(b.assemble(layout))


def test_caps(tmp_path):
    data = b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS)
    with pytest.raises(EifTooLargeError) as info:
        describe_eif(data, max_bytes=len(data) - 1)
    assert isinstance(info.value, InputTooLargeError) and isinstance(info.value, EifError)
    assert describe_eif(data, max_bytes=len(data)).measurements.to_nitro_cli() == nitro()
    with pytest.raises(EifTooLargeError, match="cmdline section"):
        describe_eif(b.build_eif(kernel=KERNEL, cmdline=b"x" * (64 * 1024 + 1), ramdisks=RAMDISKS))
    with pytest.raises(EifTooLargeError, match="metadata section"):
        describe_eif(b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS,
                                 metadata=b'{"a": "' + b"x" * (1024 * 1024) + b'"}'))
    with pytest.raises(EifTooLargeError, match="signature section"):
        describe_eif(b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=RAMDISKS, signature=b"\x00" * 70000))


def test_bad_arguments(tmp_path):
    with pytest.raises(UsageError):
        describe_eif(12345)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        describe_eif(b"", max_bytes=10)
    with pytest.raises(UsageError):
        describe_eif(b"", max_bytes=True)
    with pytest.raises(IsADirectoryError):
        describe_eif(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer, so opening for reading does not block
    try:
        with pytest.raises(UsageError, match="not a regular file"):
            describe_eif(fifo)
    finally:
        os.close(fd)
    with pytest.raises(EifTruncatedError):
        describe_eif(b"")


# --- bounded reads -----------------------------------------------------------------------------------------

class RecordingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[tuple[int, int]] = []

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and size >= 0, "the reader must never read without a bound"
        start = self.tell()
        out = super().read(size)
        self.reads.append((start, len(out)))
        return out


def test_reads_are_bounded_and_cover_the_file_once():
    large = os.urandom(2 * READ_CHUNK + 5)
    data = b.build_eif(kernel=KERNEL, cmdline=CMDLINE, ramdisks=[b"boot", large], metadata=b.metadata_json())
    stream = RecordingStream(data)
    describe_eif(stream)
    assert max(length for _, length in stream.reads) <= READ_CHUNK
    assert sum(length for _, length in stream.reads) == len(data)
    covered = sorted(stream.reads)
    assert all(a + n == c for (a, n), (c, _) in itertools.pairwise(covered))


def test_nothing_past_the_declared_end_is_read():
    data = b.assemble(_layout())
    stream = RecordingStream(data + b"\xAA" * 10_000)
    with pytest.raises(EifLayoutError, match="trailing"):
        describe_eif(stream)
    assert all(start + length <= 548 for start, length in stream.reads)
    # A section table claiming more than the file holds is refused before any section is read.
    stream = RecordingStream(_with(sizes={3: 10**12}))
    with pytest.raises(EifTruncatedError):
        describe_eif(stream)
    assert stream.reads == [(0, 548)]


# --- mutations only ever raise typed errors ----------------------------------------------------------------

def _small_signed() -> bytes:
    key, cert = b.signing_identity()
    return b.signed_eif(kernel=b"kernel" * 10, cmdline=b"console=ttyS0", ramdisks=[b"r0" * 20, b"r1" * 20],
                        key=key, certificate=cert, metadata=b'{"ImageName": "x"}')


SMALL_SIGNED = _small_signed()


@st.composite
def mutated(draw):
    data = bytearray(SMALL_SIGNED)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[position] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        else:
            del data[position:]
    out = bytes(data)
    return b.fix_crc(out) if draw(st.booleans()) else out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_raise_only_typed_errors(data):
    try:
        description = describe_eif(data)
    except EifError:
        return
    assert len(description.measurements.pcr0) == 48


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=700))
def test_random_bytes_raise_only_typed_errors(data):
    with pytest.raises(EifError):
        describe_eif(b".eif" + data[4:] if data[:1] == b"." else data)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=2000))
def test_random_signature_sections_raise_only_typed_errors(section):
    try:
        describe_eif(b.build_eif(kernel=b"k", cmdline=b"c", ramdisks=[b"r"], signature=section))
    except EifSignatureError:
        return
    pytest.fail("random bytes verified as a signature section")


# --- CLI -----------------------------------------------------------------------------------------------------

@pytest.fixture
def nitrokit(monkeypatch, capsys):
    # Only this command group: the real dispatcher and error mapping, without importing every other group.
    only_commands(monkeypatch, "nitrokit.cli.eif")

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_cli_describe_json_and_text(tmp_path, signed, signer, nitrokit):
    _, cert = signer
    path = tmp_path / "signed.eif"
    path.write_bytes(signed)
    code, out, _ = nitrokit("eif", "describe", str(path), "--json")
    assert code == 0
    parsed = json.loads(out)
    assert parsed["Measurements"] == nitro(certificate=cert)
    assert parsed["SignatureCheck"] is True
    code, out, _ = nitrokit("eif", "describe", str(path))
    assert code == 0
    for name, value in nitro(certificate=cert).items():
        if name.startswith("PCR"):
            assert f"{name}  {value}" in out
    assert "verified" in out


def test_cli_describe_escapes_the_images_own_text(tmp_path, nitrokit):
    """An EIF's cmdline, metadata and signer name cannot drive the terminal that shows the PCRs to pin."""
    attack = "\x1b[2J\x1b[H\x1b[32mVALID\x1b[0m\n  PCR0  forged"
    key, cert = b.signing_identity(cn="signer " + attack)
    image = b.signed_eif(kernel=KERNEL, cmdline=("console=ttyS0 " + attack).encode(), ramdisks=RAMDISKS, key=key,
                         certificate=cert, metadata=b.metadata_json(name="img " + attack))
    path = tmp_path / "hostile.eif"
    path.write_bytes(image)
    code, out, _ = nitrokit("eif", "describe", str(path))
    assert code == 0
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert sum(line.lstrip().startswith("PCR0") for line in out.splitlines()) == 1  # no forged PCR0 line
    for label in ("cmdline: console=ttyS0 \\x1b", "image: img \\x1b", "signer: CN=signer \\x1b"):
        assert label in out, label


def test_cli_exit_codes(tmp_path, nitrokit):
    broken = tmp_path / "broken.eif"
    broken.write_bytes(b.assemble(_layout())[:-100])
    code, out, err = nitrokit("eif", "describe", str(broken))
    assert code == 1 and out == "" and "declares sections up to byte" in err
    code, _, err = nitrokit("eif", "describe", str(tmp_path / "missing.eif"))
    assert code == 2 and "I/O error" in err
    good = tmp_path / "good.eif"
    good.write_bytes(b.assemble(_layout()))
    code, _, err = nitrokit("eif", "describe", str(good), "--max-size", "1000")
    assert code == 2 and "over the limit" in err  # an input over its cap is the caller's to fix: exit 2
    code, _, err = nitrokit("eif", "describe", str(good), "--max-size", "10")
    assert code == 2


def test_cli_skip_signature_check(tmp_path, signer, nitrokit):
    _, cert = signer
    other, _ = b.signing_identity()
    path = tmp_path / "badsig.eif"
    path.write_bytes(_signed_with(b.signature_section(cert, b.cose_sign1(other, b.pcr_payload(_pcr0())))))
    code, _, err = nitrokit("eif", "describe", str(path))
    assert code == 1 and "does not verify" in err
    code, out, _ = nitrokit("eif", "describe", str(path), "--skip-signature-check", "--json")
    assert code == 0 and json.loads(out)["SignatureCheck"] is False


def test_errors_are_nitrokit_errors():
    for error in (EifCrcError, EifHeaderError, EifLayoutError, EifMagicError, EifSectionError, EifSignatureError,
                  EifTooLargeError, EifTruncatedError, EifVersionError):
        assert issubclass(error, EifError) and issubclass(error, NitrokitError)


def _stdin(monkeypatch, data: bytes, *, tty: bool = False) -> None:
    stream = io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr(stream, "isatty", lambda: tty)
    monkeypatch.setattr(sys, "stdin", stream)


def test_cli_describe_reads_standard_input(tmp_path, monkeypatch, nitrokit):
    image = b.assemble(_layout())
    path = tmp_path / "good.eif"
    path.write_bytes(image)
    code, from_file, _ = nitrokit("eif", "describe", str(path), "--json")
    assert code == 0
    _stdin(monkeypatch, image)
    code, from_stdin, err = nitrokit("eif", "describe", "-", "--json")
    assert (code, err) == (0, "")
    assert json.loads(from_stdin) == json.loads(from_file)


def test_cli_standard_input_is_bounded(monkeypatch, nitrokit):
    image = b.assemble(_layout())
    _stdin(monkeypatch, image)
    code, out, err = nitrokit("eif", "describe", "-", "--max-size", str(len(image) - 1))
    assert (code, out) == (2, "") and f"more than {len(image) - 1} bytes" in err
    _stdin(monkeypatch, image)  # exactly the cap is fine
    assert nitrokit("eif", "describe", "-", "--max-size", str(len(image)))[0] == 0
    _stdin(monkeypatch, image[:-100])
    code, _, err = nitrokit("eif", "describe", "-")
    assert code == 1 and "declares sections up to byte" in err
    _stdin(monkeypatch, image, tty=True)
    code, _, err = nitrokit("eif", "describe", "-")
    assert code == 2 and "terminal" in err
