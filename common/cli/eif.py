"""``nitrokit eif describe``: the PCRs an enclave image will report, computed as nitro-cli does.

- ``eif describe FILE.eif [--json] [--skip-signature-check] [--max-size BYTES]``: checks the header, every
  section and the CRC, then prints PCR0, PCR1, PCR2 (and PCR8 for signed images). With ``--json`` the output
  starts with nitro-cli's ``{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": ...}}``.

Exit codes follow :mod:`common.cli`: 1 when the file is not a valid EIF (the message says why), 2 for usage
and I/O errors.
"""

from __future__ import annotations

import argparse

from common.cli._io import EXIT_OK, print_json
from common.eif import DEFAULT_MAX_EIF_BYTES, HEADER_SIZE, EifDescription, describe_eif
from common.errors import UsageError

_PCR_MEANING = {
    0: "enclave image: kernel + cmdline + all ramdisks",
    1: "kernel + cmdline + first (bootstrap) ramdisk",
    2: "application: the other ramdisks",
    8: "signing certificate",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "eif", help="read enclave image files (EIF): measurements (PCRs), sections, signature",
        description="Enclave Image Format files, as nitro-cli build-enclave writes them.",
    )
    commands = group.add_subparsers(dest="eif_command", metavar="COMMAND", required=True)
    describe = commands.add_parser(
        "describe", help="check an EIF and print its PCR0/1/2 (and PCR8 if signed) like nitro-cli",
        description="Check an EIF strictly (header, section table, CRC, signature) and print the PCRs an "
                    "enclave booted from it will report.",
    )
    describe.add_argument("eif", metavar="FILE.eif", help="the enclave image file")
    describe.add_argument("--json", action="store_true",
                          help="print JSON: nitro-cli's Measurements object plus the image's details")
    describe.add_argument("--skip-signature-check", action="store_true",
                          help="do not verify the PCR0 signature of a signed image (PCR8 is still computed)")
    describe.add_argument("--max-size", type=int, default=DEFAULT_MAX_EIF_BYTES, metavar="BYTES",
                          help=f"refuse files larger than this (default {DEFAULT_MAX_EIF_BYTES})")
    describe.set_defaults(handler=run_describe)


def run_describe(args: argparse.Namespace) -> int:
    if args.max_size < HEADER_SIZE:
        raise UsageError(f"--max-size must be at least {HEADER_SIZE}")
    description = describe_eif(args.eif, max_bytes=args.max_size, verify_signature=not args.skip_signature_check)
    if args.json:
        print_json(description.to_json())
    else:
        print(render(description))
    return EXIT_OK


def render(description: EifDescription) -> str:
    header = description.header
    lines = [
        f"EIF version {header.version}, {'aarch64' if header.arm64 else 'x86_64'}, "
        f"{len(description.sections)} sections, {description.file_size} bytes, CRC32 {header.crc32:#010x} ok",
        f"default memory {header.default_memory // (1024 * 1024)} MiB, {header.default_cpus} vCPUs",
        f"cmdline: {description.cmdline.decode('utf-8', errors='replace')}",
    ]
    if description.metadata is not None:
        name = description.metadata.get("ImageName")
        version = description.metadata.get("ImageVersion")
        if isinstance(name, str):
            lines.append(f"image: {name}" + (f" {version}" if isinstance(version, str) else ""))
    for section in description.sections:
        lines.append(f"  section {section.index}: {section.type.label:<9} at {section.offset}, {section.size} bytes")
    signature = description.signature
    if signature is not None:
        cert = signature.certificate
        check = "verified" if signature.verified else "NOT checked (--skip-signature-check)"
        lines.append(f"signed: {signature.algorithm} PCR0 signature {check}")
        lines.append(f"  signer: {cert.subject.rfc4514_string()}")
        lines.append(f"  valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ} to "
                     f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}")
    else:
        lines.append("unsigned (no PCR8)")
    lines.append("measurements (SHA-384):")
    for index, value in description.measurements.as_dict().items():
        lines.append(f"  PCR{index}  {value.hex()}  {_PCR_MEANING[index]}")
    return "\n".join(lines)
