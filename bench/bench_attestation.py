"""Attestation documents verified per second, cold and warm, beside raw P-384 verifications per second.

    python bench/bench_attestation.py [--seconds S]

cold: a new Verifier per document (every chain link verified: 4 certificate signatures + 1 COSE signature).
warm: one Verifier; documents from the same host and leaf, so only the COSE signature is checked.
Targets (issue 2): warm >= 0.7 x raw; cold >= 0.8 x raw / 5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, best_rates, print_table, row
from nitrokit.attestation import Verifier
from nitrokit.testing import build_document, fixture_pki
from nitrokit.testing.pki import utc

AT = utc(2025, 6, 1, 12)


def run(seconds: float = 2.0) -> list[Row]:
    key = ec.generate_private_key(ec.SECP384R1())
    message = b"x" * 4096
    signature = key.sign(message, ec.ECDSA(hashes.SHA384()))
    public = key.public_key()
    root = fixture_pki().root
    document = build_document(at=AT, signer=fixture_pki().issue_leaf(not_before=AT), nonce=b"n" * 32)
    warm_verifier = Verifier(root=root)
    rates = best_rates({
        "raw": lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA384())),
        "cold": lambda: Verifier(root=root).verify(document, at=AT),
        "warm": lambda: warm_verifier.verify(document, at=AT),
    }, seconds=3 * seconds)
    raw, cold, warm = rates["raw"], rates["cold"], rates["warm"]
    return [
        row("raw P-384 ECDSA verify", raw, "ops/s", note="cryptography (OpenSSL)"),
        row("document verify, warm", warm, "docs/s", ratio=warm / raw, note="target >= 0.70x raw"),
        row("document verify, cold", cold, "docs/s", ratio=cold / (raw / 5), note="vs raw/5; target >= 0.80x"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    args = parser.parse_args()
    print_table("attestation verification", run(args.seconds))


if __name__ == "__main__":
    main()
