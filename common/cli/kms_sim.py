"""``nitrokit kms-sim``: run the simulated KMS until SIGINT or SIGTERM.

The first line of standard output is the endpoint URL actually listened on (``--listen 127.0.0.1:0`` picks a
free port), flushed at once so a script or test can read it and point ``endpoint_url`` at it. One log line
per request goes to standard error. ``--listen`` takes ``HOST:PORT`` or, like every nitrokit address,
``tcp://HOST:PORT`` (the simulator speaks HTTP over TCP only). An address that cannot be listened on exits 2
with a message naming it. ``--tls`` serves HTTPS with a certificate from nitrokit's fixture TLS CA (one log line
names the CA file clients must trust), ``--tls-cert FILE --tls-key FILE`` with a certificate of one's own.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from nitrokit.cli._io import (
    EXIT_FAILURE,
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
)
from nitrokit.errors import UsageError
from nitrokit.hextext import decode_hex
from nitrokit.kms.limits import DEFAULT_MAX_CONNECTIONS
from nitrokit.text import escaped
from nitrokit.wire.address import TcpAddress, parse_address

if TYPE_CHECKING:
    from nitrokit.kms import KmsSimConfig

_MAX_POLICY_BYTES = 256 * 1024
EXIT_DENIED = EXIT_FAILURE  # explain: the request would be refused


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "kms-sim", help="run a simulated AWS KMS (keys and the five Recipient operations; attestation checked) "
                        "for offline tests",
        description="Serve the KMS protocol (GenerateRandom, a key store, Encrypt, Decrypt, GenerateDataKey, "
                    "GenerateDataKeyPair, DeriveSharedSecret) on a local port, over HTTP or (--tls) HTTPS. Prints "
                    "the endpoint URL as the first line of stdout, then serves until SIGINT or SIGTERM. Clients "
                    "sign with the configured credentials (default: AWS's example pair AKIAIOSFODNN7EXAMPLE).",
    )
    parser.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT",
                        help="address to listen on, HOST:PORT or tcp://HOST:PORT (default 127.0.0.1:0, a free "
                             "loopback port)")
    parser.add_argument("--config", metavar="FILE", help="JSON or TOML configuration (see docs/kms-sim.md)")
    parser.add_argument("--root", metavar="fixture|aws|PEM",
                        help="trust root for attestation documents (default fixture: nitrokit's test PKI)")
    parser.add_argument("--region", help="region clients must sign for (default us-east-1)")
    parser.add_argument("--policy", metavar="FILE",
                        help="KMS key-policy statement or document (JSON) whose kms:RecipientAttestation "
                             "conditions calls must meet")
    parser.add_argument("--pcr", action="append", default=[], metavar="N=HEX",
                        help="require kms:RecipientAttestation:PCR<N> = HEX (repeatable)")
    parser.add_argument("--image-sha384", metavar="HEX", help="require kms:RecipientAttestation:ImageSha384 = HEX")
    parser.add_argument("--recipient-required", action="store_true",
                        help="refuse the operations that take a Recipient without one (AccessDeniedException)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="keep the keys in DIR across runs (created 0700; holds key material in the clear: "
                             "test keys only)")
    parser.add_argument("--any-credentials", action="store_true",
                        help="accept any access key id, as moto and LocalStack do: requests must still be "
                             "SigV4-signed in form (scope, region, date), but the signature is not recomputed")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                        help=f"open connections served at once (default {DEFAULT_MAX_CONNECTIONS})")
    parser.add_argument("--tls", action="store_true",
                        help="serve HTTPS (TLS 1.2+) with a certificate issued at start by nitrokit's fixture TLS CA "
                             "(a TEST CA: trust its file, named in the log, in tests only)")
    parser.add_argument("--tls-cert", metavar="FILE",
                        help="serve HTTPS with this PEM certificate (chain) instead; needs --tls-key, implies --tls")
    parser.add_argument("--tls-key", metavar="FILE", help="the unencrypted PEM private key of --tls-cert")
    add_log_level_argument(parser, what="per-request log")
    parser.set_defaults(handler=run_kms_sim)
    commands = parser.add_subparsers(dest="kms_sim_command", metavar="{explain}")
    explain = commands.add_parser(
        "explain", help="say what the simulated KMS would decide for a request under a policy, and why",
        description="Evaluate a key policy (or IAM statement) for one operation as the simulated KMS does: the "
                    "decision, the statement that decided it, and for each statement what did not match. With "
                    "--document the request carries that attestation document as its Recipient (verified as "
                    "KMS verifies it). Exit 0 if allowed, 1 if denied.",
        epilog="Example: nitrokit kms-sim explain --policy key-policy.json --document att.bin --operation Decrypt")
    explain.add_argument("--policy", required=True, metavar="FILE",
                         help="key policy or statement(s), JSON (as nitrokit policy prints them)")
    explain.add_argument("--operation", required=True, metavar="OP",
                         help="the KMS operation, e.g. Decrypt, GenerateDataKey, GenerateRandom (or kms:Decrypt)")
    explain.add_argument("--document", metavar="DOC",
                         help="the Recipient's attestation document (binary or base64; - for stdin); none: a "
                              "request without Recipient")
    explain.add_argument("--encryption-context", action="append", default=[], metavar="K=V",
                         help="a pair of the request's encryption context (repeatable)")
    explain.add_argument("--resource", metavar="ARN",
                         help="the key ARN (default: a placeholder key ARN; * for GenerateRandom)")
    explain.add_argument("--root", metavar="fixture|aws|PEM", default="fixture",
                         help="trust root for --document (default fixture: nitrokit's test PKI)")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    explain.set_defaults(handler=run_explain)


def run_explain(args: argparse.Namespace) -> int:
    from nitrokit.attestation import Verifier, load_root
    from nitrokit.kms import AttestationConditions
    from nitrokit.kms._recipient import check_document
    from nitrokit.kms.errors import KmsServiceError
    from nitrokit.kms.explain import explain
    from nitrokit.kms_api import MAX_ATTESTATION_DOCUMENT_BYTES

    operation = args.operation.removeprefix("kms:")
    if not operation.isascii() or not operation.isalpha() or operation not in _kms_operations():
        raise UsageError(f"--operation: '{escaped(args.operation, 64)}' is not a KMS operation (e.g. Decrypt)")
    policy = AttestationConditions.from_json_text(read_input(args.policy, limit=_MAX_POLICY_BYTES, what="policy"),
                                                  what=f"--policy {args.policy}")
    context = parse_encryption_context(args.encryption_context) or {}
    pcrs = None
    if args.document is not None:
        document = decode_binary_or_base64(read_input(args.document, limit=MAX_ATTESTATION_DOCUMENT_BYTES,
                                                      what="attestation document"))
        try:
            pcrs = check_document(document, Verifier(root=load_root(args.root))).pcrs
        except KmsServiceError as exc:  # what KMS would answer: ValidationException, before any policy
            raise CommandFailed(f"KMS would refuse the request before the policy (ValidationException): "
                                f"{exc.message}") from None
    result = explain(policy, operation=operation, pcrs=pcrs, encryption_context=context or None,
                     resource=args.resource)
    if args.json:
        print_json({"decision": result.decision, "allowed": result.allowed, "action": result.action,
                    "resource": result.resource,
                    "decided_by": result.deciding.name if result.deciding is not None else None,
                    "statements": [{"name": v.name, "effect": v.effect, "applies": v.applies, "unmet": v.unmet}
                                   for v in result.verdicts]})
    else:
        print(result.text())
    return EXIT_OK if result.allowed else EXIT_DENIED


def _kms_operations() -> frozenset[str]:
    from nitrokit.kms._service import kms_operation_names

    return kms_operation_names()


def run_kms_sim(args: argparse.Namespace) -> int:
    from nitrokit.kms import SimulatedKms  # the kms-sim extra (botocore): a MissingExtraError says so

    config = build_config(args)
    host, port = parse_listen(args.listen)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both (or --tls alone for the fixture TLS CA)")
    tls = args.tls or args.tls_cert is not None
    configure_logging("nitrokit.kms_sim", args.log_level)
    log = logging.getLogger("nitrokit.kms_sim")
    if config.any_credentials:
        log.warning("accepting any credentials: SigV4 form is checked, signatures are not")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        kms = SimulatedKms(config, host=host, port=port, max_connections=args.max_connections, tls=tls,
                           tls_cert=args.tls_cert, tls_key=args.tls_key)
        try:
            kms.start()
        except OSError as exc:  # bind or name resolution: say which address, as a usage error
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise CommandFailed(f"cannot listen on {shown}: {exc.strerror or exc}", exit_code=EXIT_USAGE) from None
        try:
            print(kms.url, flush=True)
            if kms.ca_file is not None:
                log.info("TLS: clients must trust the fixture TLS CA %s (AWS_CA_BUNDLE, boto3 verify=, curl "
                         "--cacert); it is a TEST CA, its key is published", kms.ca_file)
            elif tls:
                log.info("TLS with the certificate %s", escaped(args.tls_cert, 200))
            while not stop.wait(0.5):
                pass
        finally:
            kms.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def build_config(args: argparse.Namespace) -> KmsSimConfig:
    from nitrokit.kms import AttestationConditions, KmsSimConfig, load_config

    config = load_config(args.config) if args.config else KmsSimConfig()
    changes: dict[str, Any] = {}
    if args.root:
        changes["root"] = args.root
    if args.region:
        changes["region"] = args.region
    if args.recipient_required:
        changes["recipient_required"] = True
    if args.any_credentials:
        changes["any_credentials"] = True
    if getattr(args, "state_dir", None):  # callers building a Namespace by hand may leave it out
        changes["state_dir"] = args.state_dir
    if args.policy and (args.pcr or args.image_sha384):
        raise UsageError("give either --policy or --pcr/--image-sha384, not both")
    if args.policy:
        raw = read_input(args.policy, limit=_MAX_POLICY_BYTES, what="policy")
        changes["conditions"] = AttestationConditions.from_json_text(raw, what=f"--policy {args.policy}")
    elif args.pcr or args.image_sha384:
        pcrs = parse_pcr_args(args.pcr)
        image = decode_hex(args.image_sha384, what="--image-sha384") if args.image_sha384 else None
        changes["conditions"] = AttestationConditions.require(image_sha384=image, pcrs=pcrs or None)
    config = config.replace(**changes) if changes else config
    config.resolve_root()  # a bad root is a usage error now, not a failure on the first request
    return config


def parse_listen(text: str) -> tuple[str, int]:
    """``--listen`` as (host, port): ``HOST:PORT``, ``[IPv6]:PORT`` or ``tcp://HOST:PORT``."""
    if "://" in text:
        address = parse_address(text)  # AddressError is a UsageError naming what is wrong
        if not isinstance(address, TcpAddress):
            raise UsageError(f"--listen {text!r}: the simulated KMS serves HTTP over TCP only; give tcp://HOST:PORT")
        return address.host, address.port
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {text!r} is not HOST:PORT or tcp://HOST:PORT (e.g. 127.0.0.1:0 or [::1]:8443)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)

