"""``nitrokit parent``: run the parent proxy until SIGTERM or SIGINT.

The first line of standard output is the address the proxy listens on (with the real port when port 0 was
asked), flushed at once so a supervisor or a test can read it; logs go to standard error.
"""

from __future__ import annotations

import argparse

from nitrokit.cli._io import add_log_level_argument, configure_logging
from nitrokit.errors import UsageError
from nitrokit.parent.proxy import DEFAULT_LISTEN, ParentProxy, ProxyConfig, check_operations
from nitrokit.wire import MAX_FRAME_SIZE, OPERATIONS
from nitrokit.wire.server import run_until_signal

_DEFAULTS = ProxyConfig()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "parent", help="run the parent-instance proxy that relays enclave requests to AWS KMS",
        description="Relay enclaves' KMS requests (GenerateRandom, Decrypt, GenerateDataKey, GenerateDataKeyPair, "
                    "DeriveSharedSecret, each with a Recipient) to AWS KMS. Prints the listening address as "
                    "the first line of stdout; SIGTERM or SIGINT stops accepting, finishes calls in flight and "
                    "exits 0. Credentials come from the standard AWS chain (the instance profile on EC2).",
    )
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR",
                        help=f"vsock://CID:PORT, unix:///path or tcp://HOST:PORT (default {DEFAULT_LISTEN}: "
                             "what an enclave reaches as vsock://3:8000)")
    parser.add_argument("--region", metavar="R", help="AWS region (default: AWS_REGION or the profile's)")
    parser.add_argument("--endpoint-url", metavar="URL", help="KMS endpoint (default: the region's)")
    parser.add_argument("--profile", metavar="P", help="AWS profile (default: the standard credential chain)")
    parser.add_argument("--operations", type=_operation_list, default=_DEFAULTS.operations, metavar="OP[,OP...]",
                        help="the KMS operations to relay (default all: " + ",".join(OPERATIONS) + "); a request "
                             "for another is refused UnknownOperation")
    parser.add_argument("--allow-plaintext", action="store_true",
                        help="also relay GenerateRandom requests without a Recipient (their random bytes cross "
                             "the parent); key operations are relayed only with a Recipient")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-connections", type=int, default=_DEFAULTS.max_connections, metavar="N",
                        help="open connections (default %(default)s)")
    limits.add_argument("--max-connections-per-peer", type=int, default=_DEFAULTS.max_connections_per_peer,
                        metavar="N", help="open connections from one peer: a vsock CID (one enclave), a Unix "
                                          "peer's uid, a TCP host (default %(default)s)")
    limits.add_argument("--max-inflight", type=int, default=_DEFAULTS.max_inflight, metavar="N",
                        help="KMS calls in flight overall = worker threads (default %(default)s)")
    limits.add_argument("--max-inflight-per-connection", type=int, default=_DEFAULTS.max_inflight_per_connection,
                        metavar="N", help="calls in flight per connection (default %(default)s)")
    limits.add_argument("--max-frame-size", type=int, default=_DEFAULTS.max_frame_size, metavar="BYTES",
                        help=f"largest frame accepted (default and maximum {MAX_FRAME_SIZE})")
    limits.add_argument("--read-timeout", type=float, default=_DEFAULTS.read_timeout, metavar="S",
                        help="time to receive a frame once started, or to take an answer (default %(default)s)")
    limits.add_argument("--idle-timeout", type=float, default=_DEFAULTS.idle_timeout, metavar="S",
                        help="close connections idle this long (default %(default)s)")
    limits.add_argument("--queue-timeout", type=float, default=_DEFAULTS.queue_timeout, metavar="S",
                        help="wait this long for a free worker, then answer Busy (default %(default)s)")
    limits.add_argument("--grace-period", type=float, default=_DEFAULTS.grace_period, metavar="S",
                        help="on SIGTERM, time for calls in flight to finish (default %(default)s)")
    limits.add_argument("--kms-connect-timeout", type=float, default=_DEFAULTS.kms_connect_timeout, metavar="S",
                        help="(default %(default)s)")
    limits.add_argument("--kms-read-timeout", type=float, default=_DEFAULTS.kms_read_timeout, metavar="S",
                        help="per read from KMS (default %(default)s)")
    limits.add_argument("--kms-call-timeout", type=float, default=_DEFAULTS.kms_call_timeout, metavar="S",
                        help="the whole KMS call, retries included; then the enclave is answered KmsTimeout "
                             "(default %(default)s)")
    limits.add_argument("--kms-max-attempts", type=int, default=_DEFAULTS.kms_max_attempts, metavar="N",
                        help="attempts per KMS call, botocore standard retry mode (default %(default)s)")
    add_log_level_argument(parser)
    parser.set_defaults(handler=run_parent)


def _operation_list(text: str) -> tuple[str, ...]:
    try:
        return check_operations(tuple(name.strip() for name in text.split(",")))
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_parent(args: argparse.Namespace) -> int:
    config = ProxyConfig(
        listen=args.listen, region=args.region, endpoint_url=args.endpoint_url, profile=args.profile,
        allow_plaintext=args.allow_plaintext, operations=args.operations, max_connections=args.max_connections,
        max_connections_per_peer=args.max_connections_per_peer, max_inflight=args.max_inflight,
        max_inflight_per_connection=args.max_inflight_per_connection, max_frame_size=args.max_frame_size,
        read_timeout=args.read_timeout, idle_timeout=args.idle_timeout, queue_timeout=args.queue_timeout,
        grace_period=args.grace_period, kms_connect_timeout=args.kms_connect_timeout,
        kms_read_timeout=args.kms_read_timeout, kms_max_attempts=args.kms_max_attempts,
        kms_call_timeout=args.kms_call_timeout,
    )
    configure_logging("nitrokit", args.log_level)
    return run_until_signal(ParentProxy(config), on_listening=lambda address: print(address, flush=True))

