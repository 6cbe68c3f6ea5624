"""``nitrokit eif describe``: the PCRs an enclave image will report, computed as nitro-cli does.

- ``eif describe FILE.eif [--json] [--skip-signature-check] [--max-size BYTES]``: checks the header, every
  section and the CRC, then prints PCR0, PCR1, PCR2 (and PCR8 for signed images). With ``--json`` the output
  starts with nitro-cli's ``{"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": ...}}``.

``FILE.eif`` may be ``-`` for standard input. The EIF format needs random access (the section table is checked
against the file size before any section is read), so standard input is first spooled to an anonymous
temporary file (deleted on exit), in 1 MiB chunks and never past the cap: ``--max-size`` if given, else
:data:`DEFAULT_MAX_STDIN_EIF_BYTES` (4 GiB, not the 16 GiB allowed for files, since it is a copy on the temporary
directory's disk). More than that is refused before anything is parsed. A terminal on standard input is refused.

Exit codes follow :mod:`nitrokit.cli`: 1 when the file is not a valid EIF (the message says why), 2 for usage
and I/O errors and for input over the size cap.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import BinaryIO

from nitrokit.cli._io import EXIT_OK, print_json
from nitrokit.eif import DEFAULT_MAX_EIF_BYTES, HEADER_SIZE, EifDescription, describe_eif
from nitrokit.errors import InputTooLargeError, UsageError
from nitrokit.text import escaped

#: Default cap for an EIF read from standard input (it is copied to a temporary file first).
DEFAULT_MAX_STDIN_EIF_BYTES = 4 * 1024**3
_SPOOL_CHUNK = 1024 * 1024

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
    describe.add_argument("eif", metavar="FILE.eif",
                          help="the enclave image file, or - for standard input (spooled to a temporary file, "
                               f"at most --max-size bytes; default {DEFAULT_MAX_STDIN_EIF_BYTES} for -)")
    describe.add_argument("--json", action="store_true",
                          help="print JSON: nitro-cli's Measurements object plus the image's details")
    describe.add_argument("--skip-signature-check", action="store_true",
                          help="do not verify the PCR0 signature of a signed image (PCR8 is still computed)")
    describe.add_argument("--max-size", type=int, default=None, metavar="BYTES",
                          help=f"refuse files larger than this (default {DEFAULT_MAX_EIF_BYTES}; "
                               f"{DEFAULT_MAX_STDIN_EIF_BYTES} for standard input)")
    describe.set_defaults(handler=run_describe)


def run_describe(args: argparse.Namespace) -> int:
    stdin = args.eif == "-"
    max_size: int = args.max_size
    if max_size is None:
        max_size = DEFAULT_MAX_STDIN_EIF_BYTES if stdin else DEFAULT_MAX_EIF_BYTES
    if max_size < HEADER_SIZE:
        raise UsageError(f"--max-size must be at least {HEADER_SIZE}")
    verify = not args.skip_signature_check
    if stdin:
        with tempfile.TemporaryFile(prefix="nitrokit-eif-") as spool:
            _spool_stdin(spool, limit=max_size)
            description = describe_eif(spool, max_bytes=max_size, verify_signature=verify)
    else:
        description = describe_eif(args.eif, max_bytes=max_size, verify_signature=verify)
    if args.json:
        print_json(description.to_json())
    else:
        print(render(description))
    return EXIT_OK


def _spool_stdin(spool: BinaryIO, *, limit: int) -> None:
    """Copy standard input into ``spool`` (at most ``limit`` bytes), then rewind it."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("eif describe -: standard input is a terminal; pipe or redirect the EIF into it")
    source = sys.stdin.buffer
    copied = 0
    while True:
        chunk = source.read(min(_SPOOL_CHUNK, limit + 1 - copied))
        if not chunk:
            break
        copied += len(chunk)
        if copied > limit:
            raise InputTooLargeError("the EIF on standard input", None, limit)
        spool.write(chunk)
    spool.seek(0)


# The EIF's own text (cmdline, metadata, signer name) is untrusted: escaped, so it cannot drive the terminal
# that shows the PCRs a user is about to pin, and clipped.
_MAX_SHOWN_CMDLINE = 4096
_MAX_SHOWN_TEXT = 256


def render(description: EifDescription) -> str:
    header = description.header
    lines = [
        f"EIF version {header.version}, {'aarch64' if header.arm64 else 'x86_64'}, "
        f"{len(description.sections)} sections, {description.file_size} bytes, CRC32 {header.crc32:#010x} ok",
        f"default memory {header.default_memory // (1024 * 1024)} MiB, {header.default_cpus} vCPUs",
        f"cmdline: {escaped(description.cmdline.decode('utf-8', errors='replace'), _MAX_SHOWN_CMDLINE)}",
    ]
    if description.metadata is not None:
        name = description.metadata.get("ImageName")
        version = description.metadata.get("ImageVersion")
        if isinstance(name, str):
            shown_version = f" {escaped(version, _MAX_SHOWN_TEXT)}" if isinstance(version, str) else ""
            lines.append(f"image: {escaped(name, _MAX_SHOWN_TEXT)}{shown_version}")
    for section in description.sections:
        lines.append(f"  section {section.index}: {section.type.label:<9} at {section.offset}, {section.size} bytes")
    signature = description.signature
    if signature is not None:
        cert = signature.certificate
        check = "verified" if signature.verified else "NOT checked (--skip-signature-check)"
        lines.append(f"signed: {signature.algorithm} PCR0 signature {check}")
        lines.append(f"  signer: {escaped(cert.subject.rfc4514_string(), _MAX_SHOWN_TEXT)}")
        lines.append(f"  valid {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%SZ} to "
                     f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%SZ}")
    else:
        lines.append("unsigned (no PCR8)")
    lines.append("measurements (SHA-384):")
    for index, value in description.measurements.as_dict().items():
        lines.append(f"  PCR{index}  {value.hex()}  {_PCR_MEANING[index]}")
    return "\n".join(lines)
