"""``nitrokit demo``: the whole GenerateRandom flow, offline, with real processes and sockets.

1. a simulated KMS (the real KMS JSON protocol over HTTP, SigV4, attestation checked against the fixture
   root) on a loopback port;
2. the parent proxy as a separate ``nitrokit parent`` process on a Unix socket, calling that KMS with boto3;
3. the enclave client in this process with a simulated NSM: ephemeral RSA key, attestation document,
   GenerateRandom with Recipient through the parent, CiphertextForRecipient decrypted here.

The parent only ever handles the attestation document and the CMS envelope, never the random bytes.
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import time
from pathlib import Path

from nitrokit._extras import require_extra
from nitrokit.cli._io import EXIT_OK
from nitrokit.enclave.kms_client import KmsClient
from nitrokit.kms_api import NUMBER_OF_BYTES_RANGE

DEFAULT_BYTES = 32


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole GenerateRandom flow offline: simulated KMS <- parent <- enclave client",
        description=(__doc__ or "").replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bytes", type=int, default=DEFAULT_BYTES, metavar="N",
                        help=f"how many bytes ({NUMBER_OF_BYTES_RANGE})")
    parser.add_argument("--json", action="store_true", help="print one JSON object (random: base64)")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    # Test support, loaded only when the demo runs: the simulated KMS and the parent process it starts (the
    # demo extra brings both); a missing extra is named before anything starts.
    require_extra("demo")
    from nitrokit.enclave.nsm.simulated import SimulatedNsm
    from nitrokit.kms import SimulatedKms
    from nitrokit.testing.processes import NitrokitProcess, simulator_environment

    steps: list[str] = []
    started = time.monotonic()

    def trace(message: str) -> None:
        line = f"[{(time.monotonic() - started) * 1000:7.1f} ms] {message}"
        steps.append(line)
        if not args.json:
            print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="nitrokit-demo-") as scratch, SimulatedKms() as kms:
        trace(f"simulated KMS listening at {kms.url} (attestation checked against the fixture root)")
        socket_path = Path(scratch) / "parent.sock"
        env = simulator_environment()
        with NitrokitProcess("parent", "--listen", f"unix://{socket_path}", "--endpoint-url", kms.url,
                             "--region", "us-east-1", env=env) as parent:
            trace(f"parent proxy (pid {parent.process.pid if parent.process else '?'}) listening at "
                  f"{parent.first_line}, relaying to KMS with boto3")
            with SimulatedNsm() as nsm, KmsClient(nsm=nsm, parent=parent.first_line, trace=trace) as client:
                trace(f"enclave: simulated NSM, module {nsm.describe_nsm().module_id}")
                random_bytes = client.generate_random(args.bytes)
        trace("parent stopped (SIGTERM); simulated KMS stopped")

    if args.json:
        print(json.dumps({"random": base64.b64encode(random_bytes).decode("ascii"), "bytes": len(random_bytes),
                          "steps": steps}))
    else:
        print(f"random ({len(random_bytes)} bytes): {random_bytes.hex()}")
    return EXIT_OK
