"""``nitrokit parent``: run the parent proxy (``--mode relay``, the default) or the tunnel (``--mode tunnel``)
until SIGTERM or SIGINT.

The first line of standard output is the address the proxy listens on (with the real port when port 0 was
asked), flushed at once so a supervisor or a test can read it; in tunnel mode the second line is the
credentials channel's address. Logs go to standard error. An option of the other mode is a usage error.
"""

from __future__ import annotations

import argparse
from typing import Any

from nitrokit.cli._io import add_log_level_argument, configure_logging
from nitrokit.errors import UsageError
from nitrokit.parent._tunnel_defaults import DEFAULT_CREDENTIALS_LISTEN, TUNNEL_DEFAULTS
from nitrokit.parent.proxy import DEFAULT_LISTEN, ParentProxy, ProxyConfig, check_operations
from nitrokit.wire import MAX_FRAME_SIZE, OPERATIONS, Address
from nitrokit.wire.server import run_until_signal

_DEFAULTS = ProxyConfig()
_TUNNEL = TUNNEL_DEFAULTS

#: option dest -> (the mode it belongs to, its default); given or not is told by its absence from the namespace
_MODE_OPTIONS: dict[str, tuple[str, Any]] = {}
#: the limits both modes have: each mode's own default applies when the option is not given
_SHARED_LIMITS = (
    ("--max-connections", int, "N", "open connections"),
    ("--max-connections-per-peer", int, "N", "open connections from one peer: a vsock CID (one enclave), a Unix "
                                             "peer's uid, a TCP host"),
    ("--idle-timeout", float, "S", "close connections idle this long"),
    ("--grace-period", float, "S", "on SIGTERM, time for calls or tunnels in flight to finish"),
)


def _shared_default(dest: str) -> str:
    relay, tunnel = getattr(_DEFAULTS, dest), getattr(_TUNNEL, dest)
    return f"{relay:g}" if relay == tunnel else f"{relay:g} in relay mode, {tunnel:g} in tunnel mode"


def _shared_values(args: argparse.Namespace) -> dict[str, Any]:
    """The shared limits given on the command line (the mode's config has its own defaults for the others)."""
    names = (flag.removeprefix("--").replace("-", "_") for flag, _, _, _ in _SHARED_LIMITS)
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "parent", help="run the parent-instance proxy: a KMS relay (default) or a byte tunnel to KMS",
        description="--mode relay (default): relay enclaves' KMS requests (GenerateRandom, Decrypt, "
                    "GenerateDataKey, GenerateDataKeyPair, DeriveSharedSecret, each with a Recipient) to AWS KMS. "
                    "--mode tunnel: relay bytes to one allow-listed host (default the region's KMS endpoint, "
                    "port 443) so the enclave runs TLS to KMS itself, and hand it AWS credentials on a second "
                    "address. Prints the listening address as the first line of stdout (tunnel mode: the "
                    "credentials address as the second); SIGTERM or SIGINT stops accepting, lets calls or "
                    "tunnels in flight finish and exits 0. Credentials come from the standard AWS chain (the "
                    "instance profile on EC2).",
    )
    parser.add_argument("--mode", choices=("relay", "tunnel"), default="relay",
                        help="relay: KMS requests (the parent calls KMS); tunnel: bytes (the enclave runs TLS "
                             "and signs; default %(default)s)")
    parser.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR",
                        help=f"vsock://CID:PORT, unix:///path or tcp://HOST:PORT (default {DEFAULT_LISTEN}: "
                             "what an enclave reaches as vsock://3:8000)")
    parser.add_argument("--region", metavar="R",
                        help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION; relay mode also reads the "
                             "profile's)")
    parser.add_argument("--profile", metavar="P", help="AWS profile (default: the standard credential chain)")
    relay = parser.add_argument_group("relay mode")
    _option(relay, "relay", "--endpoint-url", None, metavar="URL", help="KMS endpoint (default: the region's)")
    _option(relay, "relay", "--operations", _DEFAULTS.operations, type=_operation_list, metavar="OP[,OP...]",
            show_default=False,
            help="the KMS operations to relay (default all: " + ",".join(OPERATIONS) + "); a request for another "
                 "is refused UnknownOperation")
    _option(relay, "relay", "--allow-plaintext", False, action="store_true",
            help="also relay GenerateRandom requests without a Recipient (their random bytes cross the parent); "
                 "key operations are relayed only with a Recipient")
    tunnel = parser.add_argument_group("tunnel mode")
    _option(tunnel, "tunnel", "--target", None, metavar="HOST:PORT",
            help="where the tunnel goes (default kms.<region>.amazonaws.com:443)")
    _option(tunnel, "tunnel", "--allow-list", None, metavar="FILE",
            help="vsock-proxy's YAML allow-list; the target must be on it (default: the target alone)")
    _option(tunnel, "tunnel", "--credentials-listen", DEFAULT_CREDENTIALS_LISTEN, metavar="ADDR",
            help="the credentials channel, what an enclave reaches as vsock://3:8001")
    _option(tunnel, "tunnel", "--ip-version", "any", choices=("any", "4", "6"),
            help="the target's addresses to use: any (IPv4 first), 4 or 6")
    _option(tunnel, "tunnel", "--dns-server", (), action="append", metavar="IP[:PORT]", dest="dns_server",
            help="a nameserver to ask, up to 3 (default: /etc/resolv.conf's)")
    limits = parser.add_argument_group("limits")
    for flag, kind, metavar, text in _SHARED_LIMITS:
        limits.add_argument(flag, type=kind, default=None, metavar=metavar,
                            help=f"{text} (default {_shared_default(flag.removeprefix('--').replace('-', '_'))})")
    _option(limits, "relay", "--max-inflight", _DEFAULTS.max_inflight, type=int, metavar="N",
            help="relay: KMS calls in flight overall = worker threads")
    _option(limits, "relay", "--max-inflight-per-connection", _DEFAULTS.max_inflight_per_connection, type=int,
            metavar="N", help="relay: calls in flight per connection")
    _option(limits, "relay", "--max-frame-size", _DEFAULTS.max_frame_size, type=int, metavar="BYTES",
            help=f"relay: largest frame accepted (maximum {MAX_FRAME_SIZE})")
    _option(limits, "relay", "--read-timeout", _DEFAULTS.read_timeout, type=float, metavar="S",
            help="relay: time to receive a frame once started, or to take an answer")
    _option(limits, "relay", "--queue-timeout", _DEFAULTS.queue_timeout, type=float, metavar="S",
            help="relay: wait this long for a free worker, then answer Busy")
    _option(limits, "relay", "--kms-connect-timeout", _DEFAULTS.kms_connect_timeout, type=float, metavar="S",
            help="relay")
    _option(limits, "relay", "--kms-read-timeout", _DEFAULTS.kms_read_timeout, type=float, metavar="S",
            help="relay: per read from KMS")
    _option(limits, "relay", "--kms-call-timeout", _DEFAULTS.kms_call_timeout, type=float, metavar="S",
            help="relay: the whole KMS call, retries included; then the enclave is answered KmsTimeout")
    _option(limits, "relay", "--kms-max-attempts", _DEFAULTS.kms_max_attempts, type=int, metavar="N",
            help="relay: attempts per KMS call, botocore standard retry mode")
    _option(limits, "tunnel", "--connect-timeout", _TUNNEL.connect_timeout, type=float, metavar="S",
            help="tunnel: per address of the target tried")
    _option(limits, "tunnel", "--max-tunnel-lifetime", _TUNNEL.max_tunnel_lifetime, type=float, metavar="S",
            help="tunnel: close a tunnel this long after it opened, busy or not")
    _option(limits, "tunnel", "--buffer-size", _TUNNEL.buffer_size, type=int, metavar="BYTES",
            help="tunnel: bytes read at a time and buffered per direction")
    add_log_level_argument(parser)
    parser.set_defaults(handler=run_parent)


def _option(group: argparse._ArgumentGroup, mode: str, flag: str, default: Any, *, show_default: bool = True,
            **kwargs: Any) -> None:
    """An option of one mode: absent from the namespace unless given, so the other mode can refuse it."""
    dest = kwargs.pop("dest", flag.removeprefix("--").replace("-", "_"))
    if show_default and default not in (None, (), False):
        kwargs["help"] = f"{kwargs['help']} (default {','.join(default) if isinstance(default, tuple) else default})"
    group.add_argument(flag, dest=dest, default=argparse.SUPPRESS, **kwargs)
    _MODE_OPTIONS[dest] = (mode, default)


def _operation_list(text: str) -> tuple[str, ...]:
    try:
        return check_operations(tuple(name.strip() for name in text.split(",")))
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _mode_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``args.mode`` (defaults filled in); a usage error naming any option of the other mode."""
    wrong = sorted(f"--{dest.replace('_', '-')}" for dest, (mode, _) in _MODE_OPTIONS.items()
                   if mode != args.mode and hasattr(args, dest))
    if wrong:
        raise UsageError(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not an option of --mode "
                         f"{args.mode}")
    return {dest: getattr(args, dest, default) for dest, (mode, default) in _MODE_OPTIONS.items()
            if mode == args.mode}


def run_parent(args: argparse.Namespace) -> int:
    options = _mode_values(args)
    if args.mode == "tunnel":
        return _run_tunnel(args, options)
    config = ProxyConfig(listen=args.listen, region=args.region, profile=args.profile, **_shared_values(args),
                         **options)
    configure_logging("nitrokit", args.log_level)
    return run_until_signal(ParentProxy(config), on_listening=lambda address: print(address, flush=True))


def _run_tunnel(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from nitrokit.parent.tunnel import TunnelConfig, TunnelProxy  # loaded for tunnel mode only

    options["dns_servers"] = tuple(options.pop("dns_server"))
    config = TunnelConfig(listen=args.listen, region=args.region, profile=args.profile, **_shared_values(args),
                          **options)
    configure_logging("nitrokit", args.log_level)
    proxy = TunnelProxy(config)

    def on_listening(address: Address) -> None:
        print(address, flush=True)
        print(proxy.credentials_address, flush=True)

    return run_until_signal(proxy, on_listening=on_listening)
