"""Every benchmark in one run, one table: figures and their ratios against the raw crypto measured alongside.

    python bench/report.py [--seconds S] [--only NAME ...]

Runs each bench/bench_*.py's ``run(seconds)`` in turn, in this process (bench_generate_random,
bench_key_operations and bench_tunnel add the simulated KMS and the parents as child processes: one process
tree), and prints their rows in one table, grouped by benchmark. Each ratio is against raw crypto timed in the same
benchmark's run, as its note says (a raw P-384 verify, a raw RSA-2048 OAEP operation, or the crypto floor of
a KMS call), which cancels most of the machine's speed. docs/performance.md records this command's output.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row

#: bench module -> its group's title, in the order they run
BENCHMARKS = {
    "bench_attestation": "attestation documents verified (ratio: vs raw P-384 verifies/s)",
    "bench_nsm": "simulated NSM (ratio: vs raw P-384 signatures/s)",
    "bench_cms": "CMS envelopes, RSA-2048 (ratio: vs raw RSA-2048 OAEP, same direction)",
    "bench_kms": "simulated KMS, GenerateRandom through boto3 on loopback (ratios as noted)",
    "bench_generate_random": "GenerateRandom round trips: enclave -> parent -> KMS (ratio: vs the crypto floor)",
    "bench_key_operations": "Decrypt, GenerateDataKey(Pair), DeriveSharedSecret: enclave -> parent -> KMS "
                            "(ratio: vs each one's crypto floor)",
    "bench_tunnel": "GenerateRandom in relay mode vs tunnel mode vs a raw byte relay, 1/8/64 enclaves (ratio: vs the "
                    "crypto floor)",
    "bench_import": "start-up: the pytest plugin and the CLI (ratio: vs import pytest / python -c pass)",
}


def header(seconds: float) -> list[str]:
    return [
        f"nitrokit benchmark report, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores ({platform.machine()}, {platform.system()} {platform.release()}); "
        f"Python {platform.python_version()}; --seconds {seconds:g}",
    ]


def format_table(groups: list[tuple[str, list[Row], float]]) -> list[str]:
    """One table: a heading per group, then its rows, all in the same columns."""
    rows = [r for _, group_rows, _ in groups for r in group_rows]
    width = max((len(r["name"]) for r in rows), default=10)
    lines = []
    for title, group_rows, elapsed in groups:
        lines.append("")
        lines.append(f"{title}  [{elapsed:.0f} s]")
        for r in group_rows:
            ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else ""
            lines.append(f"  {r['name']:<{width}}  {r['value']:>12,.1f} {r['unit']:<8} {ratio:>8}  "
                         f"{r.get('note', '')}".rstrip())
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="each benchmark's time budget per figure")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only these ({', '.join(BENCHMARKS)})")
    args = parser.parse_args()
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    for line in header(args.seconds):
        print(line, flush=True)
    groups: list[tuple[str, list[Row], float]] = []
    failed = []
    started = time.perf_counter()
    for name in names:
        print(f"  running {name} ...", file=sys.stderr, flush=True)
        began = time.perf_counter()
        try:
            rows: list[Row] = importlib.import_module(f"bench.{name}").run(args.seconds)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        groups.append((f"{name}: {BENCHMARKS[name]}", rows, time.perf_counter() - began))
    print("\n".join(format_table(groups)))
    print(f"\ntotal {time.perf_counter() - started:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
