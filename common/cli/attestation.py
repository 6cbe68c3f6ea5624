"""``nitrokit verify`` and ``nitrokit inspect``: attestation documents on the command line."""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from nitrokit.attestation import (
    MAX_DOCUMENT_BYTES,
    AttestationDocument,
    AttestationError,
    CertificateValidityError,
    ChainError,
    Policy,
    TrustRootError,
    Verifier,
    load_root,
    parse_document,
)
from nitrokit.cbor import shown
from nitrokit.cli._io import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    decode_binary_or_base64,
    parse_pcr_args,
    print_json,
    read_input,
    read_public_key_file,
)
from nitrokit.errors import UsageError
from nitrokit.hextext import decode_hex
from nitrokit.text import escaped

# base64 text of a maximal document, with line breaks.
_MAX_INPUT_BYTES = MAX_DOCUMENT_BYTES * 2
_MAX_AGE_LIMIT_SECONDS = 100 * 365 * 86400
# Untrusted text shown in human-readable output is clipped to this many (escaped) characters.
_MAX_SHOWN_CHARS = 200
_MAX_SHOWN_KEY_CHARS = 80


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = subparsers.add_parser(
        "verify", help="verify an attestation document (exit 0 valid, 1 not valid, 2 usage or I/O error)",
        description="Verify a Nitro attestation document: chain to the root, COSE signature, time and policy.",
    )
    verify.add_argument("document", metavar="DOC", help="path or '-' for stdin; raw CBOR or base64")
    verify.add_argument("--root", metavar="aws|fixture|PEM",
                        help="trust root: a PEM/DER file, 'aws' (default) or 'fixture' (nitrokit's test PKI)")
    verify.add_argument("--at", default="now", metavar="now|document|ISO-8601",
                        help="verification time: now (default), a time, or 'document': the document's own "
                             "timestamp, which the document itself chooses, so expiry, future-time and --max-age "
                             "checks then prove nothing (for archived documents only)")
    verify.add_argument("--max-age", type=float, metavar="SECONDS", help="refuse documents older than this")
    verify.add_argument("--pcr", action="append", default=[], metavar="N=HEX",
                        help="expected PCR value (repeatable); without one any enclave image passes (a warning "
                             "on stderr says so)")
    verify.add_argument("--nonce", metavar="HEX", help="expected nonce")
    verify.add_argument("--user-data", metavar="HEX", help="expected user_data")
    verify.add_argument("--public-key", metavar="FILE", help="expected public_key (raw bytes, or PEM -> DER)")
    verify.add_argument("--allow-debug", action="store_true", help="accept debug-mode documents (PCR0 zero)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=run_verify)

    inspect = subparsers.add_parser(
        "inspect", help="show an attestation document's structure WITHOUT verifying it",
        description="Show a document's fields, PCRs and certificates. Nothing shown is verified.",
    )
    inspect.add_argument("document", metavar="DOC", help="path or '-' for stdin; raw CBOR or base64")
    inspect.add_argument("--json", action="store_true", help="print as JSON")
    inspect.set_defaults(handler=run_inspect)


def read_document(source: str) -> bytes:
    return decode_binary_or_base64(read_input(source, limit=_MAX_INPUT_BYTES, what="attestation document"))


def run_verify(args: argparse.Namespace) -> int:
    policy = _policy_from_args(args)
    if not policy.pins_image:
        # stderr, so --json output stays one object: an authentic document from ANY enclave image passes.
        print("warning: no --pcr given: any enclave image is accepted (pin PCR0 to accept only your image)",
              file=sys.stderr)
    try:
        verifier = Verifier(root=args.root or "aws")
    except TrustRootError as exc:
        raise CommandFailed(str(exc), exit_code=EXIT_USAGE) from None
    max_age = None
    if args.max_age is not None:
        if not math.isfinite(args.max_age) or not 0 <= args.max_age <= _MAX_AGE_LIMIT_SECONDS:
            raise UsageError(f"--max-age must be a number of seconds from 0 to {_MAX_AGE_LIMIT_SECONDS}")
        max_age = timedelta(seconds=args.max_age)
    data = read_document(args.document)
    try:
        document = parse_document(data)
        at = _time_from_arg(args.at, document)
        result = verifier.verify(document, at=at, max_age=max_age, policy=policy)
    except AttestationError as exc:
        hint = _first_failure_hint(exc, data, at_arg=args.at, root_arg=args.root)
        if args.json:
            print_json({"valid": False, "step": exc.step, "field": exc.field, "error": str(exc),
                        **({"hint": hint} if hint else {})})
        else:
            print(f"NOT VALID: {_untrusted(str(exc))}")
            if hint:
                print(f"hint: {hint}", file=sys.stderr)
        return EXIT_FAILURE

    if args.json:
        summary = describe(result.document)
        print_json({"valid": True, "verified_at": result.verified_at.isoformat(), "checks": list(result.checks),
                    "chain": [cert.subject.rfc4514_string() for cert in result.chain], **summary})
    else:
        doc = result.document
        print(f"VALID: {_untrusted(doc.module_id)} at {doc.issued_at.isoformat()} "
              f"(verified at {result.verified_at.isoformat()})")
        print(f"  checks: {', '.join(result.checks)}")
        print(f"  root: {_untrusted(result.chain[0].subject.rfc4514_string())}")
        for index, value in doc.pcrs.items():
            print(f"  PCR{index}: {value.hex()}")
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    document = parse_document(read_document(args.document))
    summary = describe(document)
    if args.json:
        print_json({"verified": False, **summary})
        return EXIT_OK
    # Everything below comes from the document: escaped, so it cannot drive the terminal or fake a verdict.
    print("NOT VERIFIED: structure only (use 'nitrokit verify' to check it)")
    print(f"module_id:  {_untrusted(summary['module_id'])}")
    print(f"timestamp:  {summary['timestamp']} ({summary['issued_at']})")
    print(f"digest:     {summary['digest']}   debug mode: {summary['debug']}   tagged: {summary['tagged']}")
    for index, value in summary["pcrs"].items():
        print(f"PCR{index:<3}     {value}")
    for name in ("public_key", "user_data", "nonce"):
        size = summary["sizes"][name]
        print(f"{name + ':':<11} {'null' if size is None else f'{size} bytes'}")
    for cert in summary["certificates"]:
        print(f"{cert['position']:<11} {_untrusted(cert['subject'])}")
        print(f"{'':<11} valid {cert['not_before']} .. {cert['not_after']}")
    for key, value in summary["unknown_fields"].items():
        print(f"unknown field (not trusted) '{_untrusted(key, _MAX_SHOWN_KEY_CHARS)}': {_untrusted(str(value))}")
    return EXIT_OK


def describe(document: AttestationDocument) -> dict[str, Any]:
    """A JSON-ready description of a document's structure (nothing in it is verified)."""
    certificates = [("certificate", document.certificate)] + [
        (f"cabundle[{i}]", der) for i, der in enumerate(document.cabundle)
    ]
    return {
        "module_id": document.module_id,
        "timestamp": document.timestamp,
        "issued_at": document.issued_at.isoformat(),
        "digest": document.digest,
        "debug": document.is_debug,
        "tagged": document.tagged,
        "pcrs": {str(index): value.hex() for index, value in document.pcrs.items()},
        "public_key": document.public_key.hex() if document.public_key is not None else None,
        "user_data": document.user_data.hex() if document.user_data is not None else None,
        "nonce": document.nonce.hex() if document.nonce is not None else None,
        "sizes": {
            "payload": len(document.payload),
            "certificate": len(document.certificate),
            "cabundle": [len(der) for der in document.cabundle],
            "public_key": _size(document.public_key),
            "user_data": _size(document.user_data),
            "nonce": _size(document.nonce),
        },
        "certificates": [_describe_certificate(position, der) for position, der in certificates],
        "unknown_fields": {key: _printable(value) for key, value in document.unknown_fields.items()},
    }


def _describe_certificate(position: str, der: bytes) -> dict[str, Any]:
    try:
        cert = x509.load_der_x509_certificate(der)
        return {"position": position, "subject": cert.subject.rfc4514_string(),
                "issuer": cert.issuer.rfc4514_string(), "not_before": cert.not_valid_before_utc.isoformat(),
                "not_after": cert.not_valid_after_utc.isoformat(), "size": len(der)}
    except (ValueError, TypeError, x509.InvalidVersion):  # TypeError: a name attribute of the wrong ASN.1 type
        return {"position": position, "subject": "(not a parseable certificate)", "issuer": None,
                "not_before": None, "not_after": None, "size": len(der)}


def _printable(value: object) -> object:
    """An unknown field's value as JSON can hold it: no NaN or Infinity, no integer json cannot write."""
    if isinstance(value, bytes):
        return {"bytes": len(value), "hex": value[:64].hex() + ("..." if len(value) > 64 else "")}
    if isinstance(value, float):
        return value if math.isfinite(value) else {"float": repr(value)}  # NaN and Infinity are not JSON
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return {"integer bits": value.bit_length()}  # no str(): past 4300 digits it raises
    if isinstance(value, str | int | bool) or value is None:
        return value
    return shown(value)  # a nested value by its kind and size: never a repr of untrusted structure


def _untrusted(text: str, limit: int = _MAX_SHOWN_CHARS) -> str:
    """Untrusted text (from a document or a certificate) as it may reach a terminal: escaped and clipped."""
    return escaped(text, limit)


def _first_failure_hint(error: AttestationError, data: bytes, *, at_arg: str, root_arg: str | None) -> str | None:
    """What to try when a first verification fails for one of the two usual reasons, else None.

    A real document checked now: its signing certificate lives about 3 hours, so it has expired. A document
    from the simulated NSM checked against the AWS root: its cabundle starts with the fixture root.
    """
    try:
        document = parse_document(data)
        if isinstance(error, CertificateValidityError) and at_arg == "now":
            signer = x509.load_der_x509_certificate(document.certificate)
            if signer.not_valid_after_utc < datetime.now(UTC):
                return (f"the signing certificate expired at {signer.not_valid_after_utc.isoformat()} (Nitro "
                        "signing certificates live about 3 hours); to check an archived document at its own "
                        "time, add --at document (then nothing shows it is recent)")
        if isinstance(error, ChainError) and root_arg in (None, "aws") and document.cabundle[0] == _fixture_root_der():
            return ("this document chains to nitrokit's fixture root (the simulated NSM), not to AWS's: "
                    "add --root fixture to check it against the test PKI (for tests only: the fixture keys are "
                    "public, so anyone can make such a document)")
    except (AttestationError, ValueError, TypeError, x509.InvalidVersion):
        return None
    return None


def _fixture_root_der() -> bytes:
    return load_root("fixture").public_bytes(serialization.Encoding.DER)


def _size(value: bytes | None) -> int | None:
    return None if value is None else len(value)




def _time_from_arg(value: str, document: AttestationDocument) -> datetime:
    if value == "now":
        return datetime.now(UTC)
    if value == "document":
        return document.issued_at
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--at {value!r} is not 'now', 'document' or an ISO-8601 time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _policy_from_args(args: argparse.Namespace) -> Policy:
    pcrs = parse_pcr_args(args.pcr)
    return Policy(  # pcrs None is Policy.any_enclave_image(); run_verify warns about it
        pcrs=dict(pcrs) or None,
        allow_debug=args.allow_debug,
        nonce=decode_hex(args.nonce, what="--nonce") if args.nonce is not None else None,
        user_data=decode_hex(args.user_data, what="--user-data") if args.user_data is not None else None,
        public_key=read_public_key_file(args.public_key) if args.public_key is not None else None,
    )
