"""Attestation documents verified per second, cold and warm, beside raw P-384 verifications per second.

    python bench/bench_attestation.py [--seconds S] [--rounds N] [--x509-verification]

cold: a new Verifier per document: every chain link's signature is verified (4 certificate signatures + 1 COSE
      signature); certificates the process has parsed before are not parsed again (bounded, by DER bytes).
cold, nothing cached: the same with the process-wide parse cache emptied before each document (a process's
      first document, or a flood of never-seen chains).
warm: one Verifier; documents from the same host and leaf, so only the COSE signature is checked.
--x509-verification: the same pipeline with cryptography.x509.verification (PolicyBuilder with extension
      policies like ours) as the chain engine, cold (a new PolicyBuilder per document) and warm (one client
      verifier for the fixed time: it has no link cache, so it verifies all 4 certificate signatures each time).
Targets (issue 2, issue 12 item 2): warm >= 0.7 x raw; cold >= 0.8 x raw / 5 on 2 shared cores.

Each figure is timed in batches of about 20 ms, in turn with raw P-384 verifies, and each batch's rate is divided
by raw's in the same cycle, so load from elsewhere on the machine cancels out; a round's ratio is the median over
its cycles, and the row prints the median round with the lowest and highest (--rounds, default 5).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, print_table, rate, row
from nitrokit.attestation import Policy, Verifier, _chain, parse_document
from nitrokit.attestation._cose import ES384, verify_signature
from nitrokit.testing import build_document, fixture_pki
from nitrokit.testing.pki import utc

AT = utc(2025, 6, 1, 12)


def _x509_verification(document: bytes, root: x509.Certificate, *, at: datetime) -> Callable[[], Callable[[], None]]:
    """A factory of document verifiers using cryptography.x509.verification for the chain step."""
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

    def ca_usage(_policy: object, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
        if not usage.key_cert_sign:
            raise ValueError("keyCertSign")

    def leaf_constraints(_policy: object, _cert: x509.Certificate, value: x509.BasicConstraints | None) -> None:
        if value is not None and value.ca:
            raise ValueError("a CA")

    def leaf_usage(_policy: object, _cert: x509.Certificate, usage: x509.KeyUsage) -> None:
        if not usage.digital_signature:
            raise ValueError("digitalSignature")

    # permit_all still refuses unaccounted-for critical extensions, as our own chain code does.
    ca_policy = (ExtensionPolicy.permit_all()
                 .require_present(x509.BasicConstraints, Criticality.CRITICAL, None)
                 .require_present(x509.KeyUsage, Criticality.AGNOSTIC, ca_usage))
    ee_policy = (ExtensionPolicy.permit_all()
                 .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, leaf_constraints)
                 .require_present(x509.KeyUsage, Criticality.AGNOSTIC, leaf_usage))
    store = Store([root])

    def client_verifier() -> object:
        return (PolicyBuilder().store(store).time(at).max_chain_depth(8)
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy).build_client_verifier())

    def factory() -> Callable[[], None]:
        verifier = client_verifier()

        def verify() -> None:
            parsed = parse_document(document)
            leaf = x509.load_der_x509_certificate(parsed.certificate)
            intermediates = [x509.load_der_x509_certificate(der) for der in parsed.cabundle]
            chain = verifier.verify(leaf, intermediates).chain  # type: ignore[attr-defined]
            key = chain[0].public_key()
            assert isinstance(key, ec.EllipticCurvePublicKey)
            assert verify_signature(key, algorithm=ES384, protected=parsed.protected, payload=parsed.payload,
                                    signature=parsed.signature)

        return verify

    return factory


def run(seconds: float = 2.0, *, rounds: int = 5, x509_verification: bool = False) -> list[Row]:
    key = ec.generate_private_key(ec.SECP384R1())
    message = b"x" * 4096
    signature = key.sign(message, ec.ECDSA(hashes.SHA384()))
    public = key.public_key()
    root = fixture_pki().root
    document = build_document(at=AT, signer=fixture_pki().issue_leaf(not_before=AT), nonce=b"n" * 32)
    policy = Policy.any_enclave_image()
    warm_verifier = Verifier(root=root)

    def nothing_cached() -> None:
        _chain._PARSED.clear()
        _chain.trusted_root.cache_clear()
        Verifier(root=root).verify(document, at=AT, policy=policy)

    operations: dict[str, Callable[[], object]] = {
        "raw": lambda: public.verify(signature, message, ec.ECDSA(hashes.SHA384())),
        "cold": lambda: Verifier(root=root).verify(document, at=AT, policy=policy),
        "warm": lambda: warm_verifier.verify(document, at=AT, policy=policy),
        "cold, nothing cached": nothing_cached,
    }
    if x509_verification:
        factory = _x509_verification(document, root, at=AT)
        warm_x509 = factory()

        def cold_x509() -> None:
            factory()()  # a new PolicyBuilder and client verifier per document

        operations["x509.verification cold"] = cold_x509
        operations["x509.verification warm"] = warm_x509

    # Per round, the median over cycles of each figure's rate over raw's in the same cycle (batches of about
    # 20 ms, in turn): a burst of load from elsewhere hits a cycle's figures alike, and the median drops the
    # cycles it hit unevenly. The spread printed is over the rounds' medians.
    per_round: dict[str, list[float]] = {name: [] for name in operations}
    raw_rates: list[float] = []
    for _ in range(rounds):
        cycles = _cycles(operations, seconds=3 * seconds * len(operations) / rounds)
        raw_rates.append(statistics.median(cycle["raw"] for cycle in cycles))
        for name in operations:
            per_round[name].append(statistics.median(cycle[name] / cycle["raw"] for cycle in cycles))

    def ratio_row(name: str, label: str, *, per_raw: float, target: str) -> Row:
        ratios = [ratio * per_raw for ratio in per_round[name]]
        spread = f"rounds: min {min(ratios):.2f} max {max(ratios):.2f} ({rounds}); {target}"
        value = statistics.median(raw_rates) * statistics.median(per_round[name])
        return row(label, value, "docs/s", ratio=statistics.median(ratios), note=spread)

    rows = [row("raw P-384 ECDSA verify", statistics.median(raw_rates), "ops/s", note="cryptography (OpenSSL)"),
            ratio_row("warm", "document verify, warm", per_raw=1, target="vs raw; target >= 0.70x"),
            ratio_row("cold", "document verify, cold", per_raw=5, target="vs raw/5; target >= 0.80x"),
            ratio_row("cold, nothing cached", "cold, nothing cached", per_raw=5, target="vs raw/5")]
    if x509_verification:
        rows += [ratio_row("x509.verification cold", "x509.verification, cold", per_raw=5, target="vs raw/5"),
                 ratio_row("x509.verification warm", "x509.verification, warm", per_raw=1, target="vs raw")]
    return rows


def _cycles(operations: dict[str, Callable[[], object]], *, seconds: float,
            batch_seconds: float = 0.02) -> list[dict[str, float]]:
    """Each operation's rate over a short batch, in turn, cycle after cycle, for about ``seconds`` in all."""
    for operation in operations.values():
        operation()  # warm-up, untimed
    cycles: list[dict[str, float]] = []
    deadline = time.perf_counter() + seconds
    while not cycles or time.perf_counter() < deadline:
        cycles.append({name: rate(operation, seconds=batch_seconds, warmup=0)
                       for name, operation in operations.items()})
    return cycles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per figure")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (ratios: median, min, max)")
    parser.add_argument("--x509-verification", action="store_true",
                        help="also time cryptography.x509.verification as the chain engine")
    args = parser.parse_args()
    print_table("attestation verification (medians; ratios per round)",
                run(args.seconds, rounds=max(1, args.rounds), x509_verification=args.x509_verification))


if __name__ == "__main__":
    main()
