"""``nitrokit kms-sim``: run the simulated KMS until SIGINT or SIGTERM.

The first line of standard output is the endpoint URL actually listened on (``--listen 127.0.0.1:0`` picks a
free port), flushed at once so a script or test can read it and point ``endpoint_url`` at it. One log line
per request goes to standard error. ``--listen`` takes ``HOST:PORT`` or, like every nitrokit address,
``tcp://HOST:PORT`` (the simulator speaks HTTP over TCP only). An address that cannot be listened on exits 2
with a message naming it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from nitrokit.cli._io import (
    EXIT_OK,
    EXIT_USAGE,
    CommandFailed,
    add_log_level_argument,
    configure_logging,
    parse_pcr_args,
    read_input,
)
from nitrokit.errors import UsageError
from nitrokit.hextext import decode_hex
from nitrokit.kms.limits import DEFAULT_MAX_CONNECTIONS
from nitrokit.wire.address import TcpAddress, parse_address

if TYPE_CHECKING:
    from nitrokit.kms import KmsSimConfig

_MAX_POLICY_BYTES = 256 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "kms-sim", help="run a simulated AWS KMS (GenerateRandom, with attestation) for offline tests",
        description="Serve the KMS protocol for GenerateRandom on a local port. Prints the endpoint URL as the "
                    "first line of stdout, then serves until SIGINT or SIGTERM. Clients sign with the configured "
                    "credentials (default: AWS's example pair AKIAIOSFODNN7EXAMPLE).",
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
                        help="refuse GenerateRandom, Decrypt and GenerateDataKey without Recipient "
                             "(AccessDeniedException)")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="keep the keys in DIR across runs (created 0700; holds key material in the clear: "
                             "test keys only)")
    parser.add_argument("--any-credentials", action="store_true",
                        help="accept any access key id, as moto and LocalStack do: requests must still be "
                             "SigV4-signed in form (scope, region, date), but the signature is not recomputed")
    parser.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N",
                        help=f"open connections served at once (default {DEFAULT_MAX_CONNECTIONS})")
    add_log_level_argument(parser, what="per-request log")
    parser.set_defaults(handler=run_kms_sim)


def run_kms_sim(args: argparse.Namespace) -> int:
    from nitrokit.kms import SimulatedKms  # the kms-sim extra (botocore): a MissingExtraError says so

    config = build_config(args)
    host, port = parse_listen(args.listen)
    configure_logging("nitrokit.kms_sim", args.log_level)
    if config.any_credentials:
        logging.getLogger("nitrokit.kms_sim").warning("accepting any credentials: SigV4 form is checked, signatures "
                                                      "are not")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        kms = SimulatedKms(config, host=host, port=port, max_connections=args.max_connections)
        try:
            kms.start()
        except OSError as exc:  # bind or name resolution: say which address, as a usage error
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise CommandFailed(f"cannot listen on {shown}: {exc.strerror or exc}", exit_code=EXIT_USAGE) from None
        try:
            print(kms.url, flush=True)
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

