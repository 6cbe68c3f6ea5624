"""``nitrokit cms``: open, make and look at the CMS envelopes KMS returns as CiphertextForRecipient.

- ``cms decrypt --key KEY.pem [IN|-] [--out FILE|-]``: the plaintext, written only once fully decrypted;
- ``cms encrypt --recipient PUBLIC.pem|SPKI.der [IN|-] [--out FILE|-]``: a KMS-shaped envelope;
- ``cms inspect IN [--json]``: versions, rid, algorithms, IV, content length and form (nothing decrypted).

Envelope inputs may be raw BER/DER or base64 (detected). Exit codes follow :mod:`nitrokit.cli`: 1 when an
envelope cannot be parsed or opened, 2 for usage errors such as a key that is not RSA 2048/3072/4096.
"""

from __future__ import annotations

import argparse
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from nitrokit.cli._io import (
    EXIT_OK,
    CommandFailed,
    decode_binary_or_base64,
    print_json,
    read_input,
    write_output,
)
from nitrokit.cms import (
    MAX_ENVELOPE_SIZE,
    MAX_PLAINTEXT_SIZE,
    CmsFormatError,
    EnvelopedData,
    UnsupportedKeyError,
    decrypt,
    encrypt_for_recipient,
    parse_enveloped_data,
)
from nitrokit.cms._model import describe_oid
from nitrokit.errors import UsageError

# Base64 text of a maximal envelope is 4/3 its size plus line breaks; parse_enveloped_data caps the rest.
_MAX_ENVELOPE_INPUT = 2 * MAX_ENVELOPE_SIZE
_MAX_KEY_FILE = 64 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = subparsers.add_parser(
        "cms", help="open, make or inspect KMS CiphertextForRecipient (CMS EnvelopedData)",
        description="CMS EnvelopedData exactly as AWS KMS returns it in CiphertextForRecipient.",
    )
    commands = group.add_subparsers(dest="cms_command", metavar="COMMAND", required=True)

    dec = commands.add_parser(
        "decrypt", help="decrypt an envelope with the recipient's RSA private key",
        description="Decrypt a CiphertextForRecipient. Nothing is written unless decryption fully succeeds.",
    )
    dec.add_argument("--key", required=True, metavar="KEY.pem", help="RSA private key (PEM or DER, unencrypted)")
    dec.add_argument("input", nargs="?", default="-", metavar="IN", help="envelope (raw or base64); '-' is stdin")
    dec.add_argument("--out", default="-", metavar="FILE", help="where to write the plaintext (default stdout)")
    dec.set_defaults(handler=run_decrypt)

    enc = commands.add_parser(
        "encrypt", help="encrypt for an RSA public key, shaped exactly like KMS output",
        description="Build a KMS-shaped CiphertextForRecipient for an RSA 2048/3072/4096 public key.",
    )
    enc.add_argument("--recipient", required=True, metavar="PUBLIC.pem|SPKI.der",
                     help="recipient SubjectPublicKeyInfo, PEM or DER")
    enc.add_argument("input", nargs="?", default="-", metavar="IN", help="plaintext file; '-' is stdin")
    enc.add_argument("--out", default="-", metavar="FILE", help="where to write the envelope (default stdout)")
    enc.set_defaults(handler=run_encrypt)

    ins = commands.add_parser(
        "inspect", help="show an envelope's structure (nothing is decrypted)",
        description="Show versions, rid, algorithms and parameters, IV, content length and form.",
    )
    ins.add_argument("input", metavar="IN", help="envelope (raw or base64); '-' is stdin")
    ins.add_argument("--json", action="store_true", help="print as JSON")
    ins.set_defaults(handler=run_inspect)


def run_decrypt(args: argparse.Namespace) -> int:
    if args.out == "-" and sys.stdout.isatty():
        # Plaintext on a terminal ends up in scrollback and screen captures; make the user choose a place.
        raise UsageError("refusing to write plaintext to a terminal: use --out FILE or a pipe")
    key = _load_private_key(args.key)
    envelope = _read_envelope(args.input)
    plaintext = decrypt(envelope, key)
    write_output(args.out, plaintext)
    return EXIT_OK


def run_encrypt(args: argparse.Namespace) -> int:
    recipient = read_input(args.recipient, limit=_MAX_KEY_FILE, what="recipient key file")
    plaintext = read_input(args.input, limit=MAX_PLAINTEXT_SIZE, what="plaintext")
    write_output(args.out, encrypt_for_recipient(plaintext, recipient))
    return EXIT_OK


def run_inspect(args: argparse.Namespace) -> int:
    envelope = _read_envelope(args.input)
    if args.json:
        print_json(envelope.to_dict())
    else:
        print(_describe(envelope))
    return EXIT_OK


def _read_envelope(source: str) -> EnvelopedData:
    data = decode_binary_or_base64(read_input(source, limit=_MAX_ENVELOPE_INPUT, what="envelope"))
    try:
        return parse_enveloped_data(data)
    except CmsFormatError as exc:
        raise CommandFailed(f"not a KMS CiphertextForRecipient: {exc}") from None


def _load_private_key(path: str) -> rsa.RSAPrivateKey:
    data = read_input(path, limit=_MAX_KEY_FILE, what="private key file")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise UsageError(f"private key {path} is password-protected; give an unencrypted key") from None
    except Exception:  # ValueError for junk, UnsupportedAlgorithm for keys cryptography cannot use
        raise UsageError(f"cannot read a private key from {path}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnsupportedKeyError(f"private key {path} is not an RSA key")
    return key


def _describe(envelope: EnvelopedData) -> str:
    def null(present: bool) -> str:
        return "NULL parameters" if present else "parameters absent"

    form = (
        f"constructed [0] of {len(envelope.chunk_sizes)} OCTET STRING chunk(s): "
        + ", ".join(str(size) for size in envelope.chunk_sizes)
        if envelope.content_form == "constructed"
        else "primitive [0]"
    )
    rows = [
        ("content type", describe_oid("1.2.840.113549.1.7.3")),
        ("encoding", "BER indefinite-length" if envelope.indefinite_length else "definite-length"),
        ("EnvelopedData version", str(envelope.version)),
        ("recipient", f"KeyTransRecipientInfo version {envelope.recipient_version}"),
        ("  rid [0] subjectKeyIdentifier", envelope.rid.hex()),
        ("  keyEncryptionAlgorithm", describe_oid(envelope.key_encryption_algorithm)),
        ("    hash", f"{describe_oid(envelope.oaep_hash_algorithm)}, {null(envelope.oaep_hash_null_parameters)}"),
        ("    mask generation", f"{describe_oid(envelope.mgf_algorithm)} with "
                                f"{describe_oid(envelope.mgf_hash_algorithm)}, "
                                f"{null(envelope.mgf_hash_null_parameters)}"),
        ("    label", "empty"),
        ("  encryptedKey", f"{envelope.encrypted_key_length} bytes (RSA-{envelope.encrypted_key_length * 8})"),
        ("encrypted content type", describe_oid(envelope.content_type)),
        ("contentEncryptionAlgorithm", describe_oid(envelope.content_encryption_algorithm)),
        ("  IV", envelope.iv.hex()),
        ("encryptedContent", f"{envelope.encrypted_content_length} bytes, {form}"),
    ]
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name + ':':<{width}}{value}" for name, value in rows)


__all__ = ["register", "run_decrypt", "run_encrypt", "run_inspect"]

