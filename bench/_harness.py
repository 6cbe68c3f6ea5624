"""Shared timing helpers for the benchmarks: a rate measured over a time budget, and a printed table.

Figures are per second over wall-clock time on this machine; what matters is the ratio to the raw crypto
measured in the same run, which cancels most of the machine's speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Row = dict[str, Any]


def rate(operation: Callable[[], object], *, seconds: float, warmup: int = 3) -> float:
    """Calls of ``operation`` per second, over at least ``seconds`` (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        operation()
    calls = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        operation()
        calls += 1
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def best_rates(operations: dict[str, Callable[[], object]], *, seconds: float, rounds: int = 5) -> dict[str, float]:
    """Each operation's best rate over ``rounds`` interleaved rounds sharing ``seconds`` in all.

    Interleaving means a burst of load from elsewhere on the machine hits every figure alike, so the
    ratios between them stay meaningful; the best round is the least disturbed one.
    """
    best = dict.fromkeys(operations, 0.0)
    share = seconds / rounds
    for _ in range(rounds):
        for name, operation in operations.items():
            best[name] = max(best[name], rate(operation, seconds=share, warmup=1))
    return best


def row(name: str, value: float, unit: str, *, ratio: float | None = None, note: str = "") -> Row:
    return {"name": name, "value": value, "unit": unit, "ratio": ratio, "note": note}


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r.get("ratio") is not None else ""
        print(f"  {r['name']:<{width}}  {r['value']:>12,.1f} {r['unit']:<8} {ratio:>7}  {r.get('note', '')}")
