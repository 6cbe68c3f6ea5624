"""``nitrokit enclave ...``: the enclave's primitives on the command line: attestation and PCRs via the NSM, and
the KMS calls through the parent (generate-random, decrypt, generate-data-key, generate-data-key-pair,
derive-shared-secret; each prints the secret alone, or with ``--json`` one object of the answer's members).
The KMS commands take ``--mode tunnel`` (with ``--region``, ``--kms-host``, ``--ca-file``, ``--credentials``) to
call KMS over TLS from here through the parent's byte relay instead (:mod:`nitrokit.enclave.tunnel`).

Subcommands that talk to an NSM take ``--nsm device|simulated`` (default device: /dev/nsm, only in an enclave).
Adding one: write ``_add_<name>(commands)`` (its parser, calling :func:`add_nsm_option` if it talks to an
NSM) and a ``run_<name>(args) -> exit code`` handler, then list ``_add_<name>`` in ``_SUBCOMMANDS``.
An NSM refusal (over its limits, locked PCR, bad index...) is an :class:`NsmError`: exit 1 with the NSM's code.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeAlias

from nitrokit.attestation import MAX_OPTIONAL_FIELD_BYTES, PCR_COUNT
from nitrokit.cli._io import (
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    add_log_level_argument,
    configure_logging,
    decode_binary_or_base64,
    parse_encryption_context,
    parse_pcr_args,
    print_json,
    read_input,
    read_public_key_file,
    write_output,
)
from nitrokit.enclave.kms_client import DEFAULT_PARENT, SUPPORTED_KEY_PAIR_SPECS, KmsClient, KmsResult
from nitrokit.enclave.nsm import (
    BOOT_LOCKED_PCRS,
    DEFAULT_DEVICE_PATH,
    NSM_KINDS,
    PCR_BYTES,
    Nsm,
    NsmUnavailableError,
    open_nsm,
)
from nitrokit.enclave.service import DEFAULT_LISTEN as DEFAULT_SERVICE_LISTEN
from nitrokit.enclave.service import EnclaveService
from nitrokit.errors import UsageError
from nitrokit.hextext import decode_hex
from nitrokit.kms_api import (
    DATA_KEY_SPEC_BYTES,
    ENCRYPTION_ALGORITHMS,
    MAX_CIPHERTEXT_BLOB_BYTES,
    MAX_GRANT_TOKENS,
    NUMBER_OF_BYTES_RANGE,
    region_from_environment,
)
from nitrokit.wire.credentials import ENCLAVE_CREDENTIALS_ADDRESS
from nitrokit.wire.server import run_until_signal
from nitrokit.wire.service import ATTEST, MAX_MESSAGE_BYTES, MAX_NONCE_BYTES, SIGN, ServiceClient

_EXTENDABLE = f"{BOOT_LOCKED_PCRS}..{PCR_COUNT - 1}"
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(subparsers: Subparsers) -> None:
    enclave = subparsers.add_parser(
        "enclave", help="inside an enclave: NSM operations (attest, PCRs) and KMS calls through the parent (or "
                        "with a simulated NSM)",
        description="Talk to the Nitro Secure Module: /dev/nsm inside an enclave, or a simulated NSM anywhere.",
    )
    commands = enclave.add_subparsers(dest="enclave_command", metavar="SUBCOMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(commands)


def add_nsm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nsm", choices=NSM_KINDS, default="device",
        help="device: /dev/nsm (default; only inside a Nitro enclave); simulated: an in-process NSM whose "
             "documents are signed by nitrokit's TEST PKI (verify them with --root fixture)",
    )


def nsm_from_args(args: argparse.Namespace, **simulated_options: Any) -> Nsm:
    """The NSM chosen by ``--nsm``; ``simulated_options`` shape a simulated one and are refused for the device.

    A missing /dev/nsm (outside an enclave) exits 2 saying to use ``--nsm simulated``.
    """
    if args.nsm == "device":
        if simulated_options:
            raise UsageError(f"{', '.join(sorted(simulated_options))}: for --nsm simulated only")
        try:
            return open_nsm("device")
        except NsmUnavailableError:
            if os.path.exists(DEFAULT_DEVICE_PATH):
                raise  # there but unusable (permissions, a driver error): an operation failure, exit 1
            # Not a failure of the NSM but a wrong choice of it here: a usage error, with what to do instead.
            raise CommandFailed(f"{DEFAULT_DEVICE_PATH} does not exist: it only exists inside a Nitro enclave; "
                                "use --nsm simulated elsewhere", exit_code=EXIT_USAGE) from None
    return open_nsm("simulated", **simulated_options)


# --- attest ---------------------------------------------------------------------------------------------


def _add_attest(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "attest", help="write an attestation document (raw CBOR) from the NSM",
        description="Ask the NSM for an attestation document carrying the given public key, user data and nonce. "
                    "--pcr and --debug shape a simulated document, for your own offline tests.",
    )
    add_nsm_option(parser)
    parser.add_argument("--public-key", metavar="FILE",
                        help="public key to embed: a PEM public key (stored as DER SPKI) or raw bytes")
    parser.add_argument("--user-data", metavar="HEX",
                        help=f"user data to embed (the NSM takes up to {MAX_OPTIONAL_FIELD_BYTES} bytes)")
    parser.add_argument("--nonce", metavar="HEX",
                        help=f"nonce to embed (the NSM takes up to {MAX_OPTIONAL_FIELD_BYTES} bytes)")
    parser.add_argument("--pcr", action="append", default=[], metavar="N=HEX",
                        help=f"simulated only: start value of PCR N (0..{BOOT_LOCKED_PCRS - 1}, {PCR_BYTES} bytes); "
                             "repeatable")
    parser.add_argument("--debug", action="store_true",
                        help=f"simulated only: a debug-mode enclave (PCR0..{BOOT_LOCKED_PCRS - 1} all zero)")
    parser.add_argument("--out", default="-", metavar="FILE|-", help="where to write the document (default stdout)")
    parser.set_defaults(handler=run_attest)


def run_attest(args: argparse.Namespace) -> int:
    simulated: dict[str, Any] = {}
    if args.pcr:
        simulated["pcrs"] = parse_pcr_args(args.pcr)
    if args.debug:
        simulated["debug"] = True
    if simulated and args.nsm != "simulated":
        raise UsageError("--pcr and --debug shape simulated documents only: add --nsm simulated")
    _refuse_terminal(args.out)
    public_key = read_public_key_file(args.public_key) if args.public_key is not None else None
    user_data = decode_hex(args.user_data, what="--user-data") if args.user_data is not None else None
    nonce = decode_hex(args.nonce, what="--nonce") if args.nonce is not None else None

    with nsm_from_args(args, **simulated) as nsm:
        document = nsm.attestation(user_data=user_data, nonce=nonce, public_key=public_key)
    write_output(args.out, document)
    return EXIT_OK


def _refuse_terminal(out: str) -> None:
    if out == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write a binary document to a terminal: use --out FILE or a pipe")


# --- describe-pcr, extend-pcr ---------------------------------------------------------------------------


def _add_describe_pcr(commands: Subparsers) -> None:
    parser = commands.add_parser("describe-pcr", help="show whether a PCR is locked, and its value (JSON)",
                                 description="Show one PCR: locked or not, and its value in hex.")
    parser.add_argument("index", type=int, metavar="N", help=f"PCR index (the NSM has 0..{PCR_COUNT - 1})")
    add_nsm_option(parser)
    parser.set_defaults(handler=run_describe_pcr)


def run_describe_pcr(args: argparse.Namespace) -> int:
    with nsm_from_args(args) as nsm:
        state = nsm.describe_pcr(args.index)
    print_json({"index": args.index, "locked": state.locked, "data": state.data.hex(), "nsm": args.nsm})
    return EXIT_OK


def _add_extend_pcr(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "extend-pcr", help="extend a PCR with data and show its new value (JSON)",
        description="Extend PCR N with the bytes HEX (new = SHA-384(old || data)) and show the new value. "
                    f"PCR0..{BOOT_LOCKED_PCRS - 1} are locked from boot; {_EXTENDABLE} can be extended until "
                    "locked. The simulated NSM keeps no state between commands: with --nsm simulated this shows "
                    f"one extend of the PCR from its start value ({PCR_BYTES} zero bytes for {_EXTENDABLE}).",
    )
    parser.add_argument("index", type=int, metavar="N", help=f"PCR index ({_EXTENDABLE} are extendable)")
    parser.add_argument("data", metavar="HEX", help="the bytes to extend with, in hex")
    add_nsm_option(parser)
    parser.set_defaults(handler=run_extend_pcr)


def run_extend_pcr(args: argparse.Namespace) -> int:
    data = decode_hex(args.data, what="HEX")
    with nsm_from_args(args) as nsm:
        value = nsm.extend_pcr(args.index, data)
    print_json({"index": args.index, "data": value.hex(), "nsm": args.nsm})
    return EXIT_OK


# --- describe-nsm ---------------------------------------------------------------------------------------


def _add_describe_nsm(commands: Subparsers) -> None:
    parser = commands.add_parser("describe-nsm", help="show the NSM's version, module id and locked PCRs (JSON)",
                                 description="Show what DescribeNSM reports.")
    add_nsm_option(parser)
    parser.set_defaults(handler=run_describe_nsm)


def run_describe_nsm(args: argparse.Namespace) -> int:
    with nsm_from_args(args) as nsm:
        description = nsm.describe_nsm()
    report = asdict(description)
    report["locked_pcrs"] = list(description.locked_pcrs)
    print_json({**report, "version": description.version, "nsm": args.nsm})
    return EXIT_OK


# --- generate-random ------------------------------------------------------------------------------------


def _add_generate_random(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "generate-random", help="random bytes from KMS GenerateRandom via the parent, readable only here",
        description="Ask KMS (through the parent proxy) for random bytes encrypted to an ephemeral key that is "
                    "attested by the NSM; decrypt them here and print only the bytes.",
    )
    parser.add_argument("--bytes", type=int, required=True, metavar="N",
                        help=f"how many bytes ({NUMBER_OF_BYTES_RANGE})")
    _add_parent_options(parser)
    parser.add_argument("--custom-key-store-id", metavar="ID", help="generate in this custom key store")
    _add_output_options(parser)
    parser.add_argument("--mix-nsm-entropy", action=argparse.BooleanOptionalAction, default=True,
                        help="derive the output with HKDF from the KMS bytes and the NSM's own random bytes, so "
                             "a hostile parent alone cannot choose it (the default); --no-mix-nsm-entropy prints "
                             "the KMS bytes as decrypted, which a hostile parent can forge (docs/threat-model.md)")
    parser.set_defaults(handler=run_generate_random)


def run_generate_random(args: argparse.Namespace) -> int:
    with nsm_from_args(args) as nsm, _kms_client(args, nsm, mix_nsm_entropy=args.mix_nsm_entropy) as kms:
        data = kms.generate_random(args.bytes, custom_key_store_id=args.custom_key_store_id)
    if args.json:
        print_json({"Plaintext": base64.b64encode(data).decode("ascii")})
    else:
        print_bytes(data, args.format)
    return EXIT_OK


# --- decrypt, generate-data-key, generate-data-key-pair, derive-shared-secret ---------------------------


def _add_parent_options(parser: argparse.ArgumentParser) -> None:
    """--parent, --mode and the tunnel options, and --nsm: what every command that calls KMS takes."""
    parser.add_argument("--parent", default=DEFAULT_PARENT, metavar="ADDR",
                        help=f"the parent proxy's address, or in tunnel mode its byte relay (default {DEFAULT_PARENT}; "
                             "also unix:///path, tcp://HOST:PORT)")
    parser.add_argument("--mode", choices=("relay", "tunnel"), default="relay",
                        help="relay: the parent calls KMS (default); tunnel: this enclave calls KMS over TLS "
                             "through the parent's byte relay (nitrokit parent --mode tunnel), so the parent can "
                             "neither read nor forge the answer")
    tunnel = parser.add_argument_group("tunnel mode (--mode tunnel)")
    tunnel.add_argument("--region", metavar="R", help="the KMS region (default: AWS_REGION or AWS_DEFAULT_REGION)")
    tunnel.add_argument("--kms-host", metavar="HOST",
                        help="KMS's host name: the TLS server name checked against the certificate and the Host "
                             "header (default kms.REGION.amazonaws.com)")
    tunnel.add_argument("--ca-file", metavar="FILE",
                        help="PEM roots to verify KMS's certificate with (default: the Amazon Trust Services roots "
                             "shipped with nitrokit)")
    tunnel.add_argument("--credentials", metavar="ADDR",
                        help=f"the parent's credentials channel (default {ENCLAVE_CREDENTIALS_ADDRESS})")
    add_nsm_option(parser)


_TUNNEL_OPTIONS = (("region", "--region"), ("kms_host", "--kms-host"), ("ca_file", "--ca-file"),
                   ("credentials", "--credentials"))


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    add_format_option(parser, default="hex")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object: the secret and the answer's other members, named as KMS names "
                             "them, bytes in base64 (--format is then ignored)")


def _add_key_options(parser: argparse.ArgumentParser, *, key_id_required: bool, context: bool = True) -> None:
    parser.add_argument("--key-id", required=key_id_required, metavar="K",
                        help="the KMS key: key id, key ARN, alias name (alias/...) or alias ARN"
                             + ("" if key_id_required else " (required by KMS for asymmetric keys)"))
    if context:
        parser.add_argument("--encryption-context", action="append", default=[], metavar="KEY=VALUE",
                            help="an encryption context pair (repeat for more); Decrypt needs the pairs used "
                                 "when the ciphertext was made")
    parser.add_argument("--grant-token", action="append", default=None, metavar="T",
                        help=f"a grant token (repeat for more, at most {MAX_GRANT_TOKENS})")


def _kms_client(args: argparse.Namespace, nsm: Nsm, **options: Any) -> KmsClient:
    """The KMS client the --parent, --mode and tunnel options describe."""
    given = {name: getattr(args, name) for name, _ in _TUNNEL_OPTIONS if getattr(args, name) is not None}
    if args.mode == "relay" and given:
        flags = ", ".join(flag for name, flag in _TUNNEL_OPTIONS if name in given)
        raise UsageError(f"{flags}: for --mode tunnel only")
    if args.mode == "tunnel" and "region" not in given and region_from_environment() is None:
        raise UsageError("--mode tunnel needs the KMS region: --region R (or AWS_REGION / AWS_DEFAULT_REGION)")
    return KmsClient(nsm=nsm, parent=args.parent, mode=args.mode, **given, **options)


def _run_kms(args: argparse.Namespace, call: Callable[[KmsClient], KmsResult]) -> int:
    """Make one key-operation call through the parent; print the secret alone in --format (as generate-random
    prints), or with --json every member by its KMS name."""
    with nsm_from_args(args) as nsm, _kms_client(args, nsm) as kms:
        result = call(kms)
    if args.json:
        print_json({name: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
                    for name, value in result.kms_members().items()})
    else:
        print_bytes(result.secret, args.format)
    return EXIT_OK


def _add_decrypt(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "decrypt", help="KMS Decrypt via the parent: the plaintext is readable only here",
        description="Ask KMS (through the parent proxy) to decrypt a ciphertext blob, with a Recipient: the "
                    "plaintext comes back encrypted to an ephemeral key the NSM attests, and is opened here. "
                    "Prints the plaintext (--format), or with --json also KeyId and EncryptionAlgorithm.",
    )
    parser.add_argument("--ciphertext-blob", required=True, metavar="FILE|-",
                        help=f"the ciphertext (from Encrypt or GenerateDataKey), raw or base64, at most "
                             f"{MAX_CIPHERTEXT_BLOB_BYTES} bytes")
    _add_key_options(parser, key_id_required=False)
    parser.add_argument("--encryption-algorithm", choices=ENCRYPTION_ALGORITHMS, metavar="ALG",
                        help=f"one of {', '.join(ENCRYPTION_ALGORITHMS)} (default SYMMETRIC_DEFAULT)")
    _add_parent_options(parser)
    _add_output_options(parser)
    parser.set_defaults(handler=run_decrypt)


def run_decrypt(args: argparse.Namespace) -> int:
    # Room for base64 of the largest blob and line breaks; the wire shape refuses anything over the API's limit.
    data = read_input(args.ciphertext_blob, limit=2 * MAX_CIPHERTEXT_BLOB_BYTES, what="--ciphertext-blob")
    blob = decode_binary_or_base64(data)
    context = parse_encryption_context(args.encryption_context)
    return _run_kms(args, lambda kms: kms.decrypt(blob, key_id=args.key_id, encryption_context=context,
                                                  encryption_algorithm=args.encryption_algorithm,
                                                  grant_tokens=args.grant_token))


def _add_generate_data_key(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "generate-data-key", help="KMS GenerateDataKey via the parent: the data key is readable only here",
        description="Ask KMS (through the parent proxy) for a data key under a KMS key, with a Recipient: the "
                    "plaintext key comes back encrypted to an ephemeral key the NSM attests, and is opened here. "
                    "Prints the plaintext key (--format); use --json to get CiphertextBlob too (keep it: "
                    "'nitrokit enclave decrypt' gives the key back).",
    )
    _add_key_options(parser, key_id_required=True)
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--key-spec", choices=tuple(DATA_KEY_SPEC_BYTES), help="AES_256 (32 bytes) or AES_128 (16)")
    size.add_argument("--bytes", type=int, metavar="N", help=f"the key's length in bytes ({NUMBER_OF_BYTES_RANGE})")
    _add_parent_options(parser)
    _add_output_options(parser)
    parser.set_defaults(handler=run_generate_data_key)


def run_generate_data_key(args: argparse.Namespace) -> int:
    context = parse_encryption_context(args.encryption_context)
    return _run_kms(args, lambda kms: kms.generate_data_key(args.key_id, key_spec=args.key_spec,
                                                            number_of_bytes=args.bytes, encryption_context=context,
                                                            grant_tokens=args.grant_token))


def _add_generate_data_key_pair(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "generate-data-key-pair", help="KMS GenerateDataKeyPair via the parent: the private key is readable "
                                       "only here",
        description="Ask KMS (through the parent proxy) for a data key pair, with a Recipient: the private key "
                    "(PKCS#8 DER) comes back encrypted to an ephemeral key the NSM attests, is opened here and "
                    "checked against the spec and the PublicKey answered. Prints the private key (--format); use "
                    "--json to get PublicKey and PrivateKeyCiphertextBlob too.",
    )
    _add_key_options(parser, key_id_required=True)
    parser.add_argument("--key-pair-spec", required=True, choices=SUPPORTED_KEY_PAIR_SPECS, metavar="SPEC",
                        help=f"one of {', '.join(SUPPORTED_KEY_PAIR_SPECS)}")
    _add_parent_options(parser)
    _add_output_options(parser)
    parser.set_defaults(handler=run_generate_data_key_pair)


def run_generate_data_key_pair(args: argparse.Namespace) -> int:
    context = parse_encryption_context(args.encryption_context)
    return _run_kms(args, lambda kms: kms.generate_data_key_pair(args.key_id, args.key_pair_spec,
                                                                 encryption_context=context,
                                                                 grant_tokens=args.grant_token))


def _add_derive_shared_secret(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "derive-shared-secret", help="KMS DeriveSharedSecret via the parent: the shared secret is readable "
                                     "only here",
        description="Ask KMS (through the parent proxy) for the ECDH shared secret of a KMS key pair "
                    "(KEY_AGREEMENT) and a peer's public key, with a Recipient: the secret comes back encrypted "
                    "to an ephemeral key the NSM attests, and is opened here. Prints the shared secret "
                    "(--format), or with --json also KeyId, KeyAgreementAlgorithm and KeyOrigin.",
    )
    _add_key_options(parser, key_id_required=True, context=False)
    parser.add_argument("--public-key", required=True, metavar="FILE",
                        help="the peer's public key: PEM, or DER SubjectPublicKeyInfo (P-256, P-384, P-521, "
                             "secp256k1)")
    _add_parent_options(parser)
    _add_output_options(parser)
    parser.set_defaults(handler=run_derive_shared_secret)


def run_derive_shared_secret(args: argparse.Namespace) -> int:
    public_key = read_public_key_file(args.public_key)
    return _run_kms(args, lambda kms: kms.derive_shared_secret(args.key_id, public_key,
                                                               grant_tokens=args.grant_token))


def add_format_option(parser: argparse.ArgumentParser, *, default: str) -> None:
    parser.add_argument("--format", choices=("hex", "base64", "raw"), default=default,
                        help=f"output form ({default})")


def print_bytes(data: bytes, form: str) -> None:
    """``data`` on standard output as ``form`` (hex or base64 on one line, or the raw bytes)."""
    if form == "raw":
        write_output("-", data)
    elif form == "base64":
        print(base64.b64encode(data).decode("ascii"))
    else:
        print(data.hex())


# --- serve ----------------------------------------------------------------------------------------------


def _add_serve(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "serve", help="the enclave service: a KMS-seeded identity, attestation documents on request",
        description="Get a seed from KMS through the parent (GenerateRandom with Recipient), derive a P-384 "
                    "identity from it, and answer Attest requests with NSM documents carrying the caller's nonce "
                    "and the identity's public key, and Sign requests with the identity's signature. Prints the "
                    "listening address first, logs a start line and one line per call on stderr; SIGTERM stops "
                    "it. See docs/enclave-service.md.",
    )
    parser.add_argument("--listen", default=DEFAULT_SERVICE_LISTEN, metavar="ADDR",
                        help=f"where to listen (default {DEFAULT_SERVICE_LISTEN})")
    _add_parent_options(parser)
    parser.add_argument("--no-mix-nsm-entropy", action="store_true",
                        help="use the KMS bytes alone as the seed (by default they are mixed with NSM entropy, "
                             "so a hostile parent cannot choose the identity)")
    add_log_level_argument(parser, what="start line and one line per call")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    configure_logging("nitrokit", args.log_level)
    with nsm_from_args(args) as nsm:
        kms = _kms_client(args, nsm, mix_nsm_entropy=not args.no_mix_nsm_entropy)
        service = EnclaveService(nsm=nsm, kms=kms, listen=args.listen)
        return run_until_signal(service, on_listening=lambda address: print(address, flush=True))


# --- call -----------------------------------------------------------------------------------------------


def _add_call(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "call", help="call a running enclave service (nitrokit enclave serve): Attest or Sign",
        description="Send one request to an enclave service and print its answer. Nothing in the answer is "
                    "verified here: verify an Attest document with 'nitrokit verify' (its public key is the "
                    "service's identity) before trusting a signature. See docs/enclave-service.md.",
    )
    operations = parser.add_subparsers(dest="operation", metavar="OPERATION", required=True)
    attest = operations.add_parser(
        ATTEST.name, help="a fresh attestation document carrying your nonce and the service's public key",
        description="Write the service's attestation document (raw CBOR) for NONCE; verify it with "
                    "'nitrokit verify DOC --nonce HEX'.")
    _add_service_option(attest)
    attest.add_argument("--nonce", required=True, metavar="HEX",
                        help=f"the nonce the document must carry (1..{MAX_NONCE_BYTES} bytes)")
    attest.add_argument("--out", default="-", metavar="FILE|-", help="where to write the document (default stdout)")
    attest.set_defaults(handler=run_call_attest)
    sign = operations.add_parser(
        SIGN.name, help="the service identity's signature over a message",
        description="Print the service identity's ECDSA P-384/SHA-384 signature (DER) over the signature "
                    "context followed by the message.")
    _add_service_option(sign)
    message = sign.add_mutually_exclusive_group(required=True)
    message.add_argument("--message", metavar="HEX", help=f"the message (1..{MAX_MESSAGE_BYTES} bytes), in hex")
    message.add_argument("--message-file", metavar="FILE|-", help="the message, read from a file or stdin")
    add_format_option(sign, default="base64")
    sign.set_defaults(handler=run_call_sign)


def _add_service_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, metavar="ADDR",
                        help=f"the service's address: vsock://CID:PORT (it listens on {DEFAULT_SERVICE_LISTEN} by "
                             "default), unix:///path or tcp://HOST:PORT")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S",
                        help="seconds to wait for the answer (default %(default)s)")


def _service_client(args: argparse.Namespace) -> ServiceClient:
    if not 0 < args.timeout <= 3600:
        raise UsageError("--timeout must be above 0 and at most 3600 seconds")
    return ServiceClient(args.service, timeout=args.timeout)


def run_call_attest(args: argparse.Namespace) -> int:
    nonce = decode_hex(args.nonce, what="--nonce")
    _refuse_terminal(args.out)
    with _service_client(args) as service:
        document = service.attest(nonce)
    write_output(args.out, document)
    return EXIT_OK


def run_call_sign(args: argparse.Namespace) -> int:
    if args.message is not None:
        message = decode_hex(args.message, what="--message")
    else:
        message = read_input(args.message_file, limit=MAX_MESSAGE_BYTES, what="--message-file")
    with _service_client(args) as service:
        signature = service.sign(message)
    print_bytes(signature, args.format)
    return EXIT_OK


# In --help order. Add new subcommands here.
_SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_attest,
    _add_describe_pcr,
    _add_extend_pcr,
    _add_describe_nsm,
    _add_generate_random,
    _add_decrypt,
    _add_generate_data_key,
    _add_generate_data_key_pair,
    _add_derive_shared_secret,
    _add_serve,
    _add_call,
)
