"""Simulated NSM attestations per second beside raw P-384 signatures per second.

    python bench/bench_nsm.py [--seconds S]

reused leaf: the simulator's normal mode (one 3-hour signing certificate reused while it has over an hour
left): one COSE ES384 signature plus CBOR work per document. fresh leaf: a new leaf for every document (what
reuse avoids: a P-384 key generation and a certificate signature on top). Also: a DescribePCR round trip
through the codec, and ephemeral RSA-2048 key generation.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, best_rates, print_table, row
from nitrokit.enclave.keys import EphemeralKeyPair
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.testing.pki import utc

AT = utc(2025, 6, 1, 12)


class _Jumping:
    """A clock that moves 3 hours per call, so every document needs a new leaf."""

    def __init__(self) -> None:
        self.now = AT

    def __call__(self) -> datetime:
        self.now += timedelta(hours=3)
        return self.now


def run(seconds: float = 2.0) -> list[Row]:
    key = ec.generate_private_key(ec.SECP384R1())
    message = b"x" * 4096  # about a document's payload
    reused = SimulatedNsm(clock=lambda: AT)
    fresh = SimulatedNsm(clock=_Jumping())
    nonce = b"n" * 32
    rates = best_rates({
        "raw": lambda: key.sign(message, ec.ECDSA(hashes.SHA384())),
        "reused": lambda: reused.attestation(nonce=nonce),
        "fresh": lambda: fresh.attestation(nonce=nonce),
        "describe": lambda: reused.describe_pcr(0),
        "rsa": EphemeralKeyPair.generate,
    }, seconds=5 * seconds)
    raw = rates["raw"]
    return [
        row("raw P-384 ECDSA sign", raw, "ops/s", note="cryptography (OpenSSL), 4 KiB message"),
        row("simulated attestation, reused leaf", rates["reused"], "docs/s", ratio=rates["reused"] / raw,
            note="the simulator's normal mode"),
        row("simulated attestation, fresh leaf", rates["fresh"], "docs/s", ratio=rates["fresh"] / raw,
            note="new key + certificate per document"),
        row("DescribePCR round trip (simulated)", rates["describe"], "ops/s", note="encode, handle, decode"),
        row("ephemeral RSA-2048 key pair", rates["rsa"], "keys/s", note="EphemeralKeyPair.generate()"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    args = parser.parse_args()
    print_table("simulated NSM", run(args.seconds))


if __name__ == "__main__":
    main()
