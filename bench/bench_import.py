"""What nitrokit adds to start-up: the pytest plugin every test session loads, and the command line.

    python bench/bench_import.py [--seconds S]

Each figure is the median over fresh interpreters of ``python -X importtime`` cumulative microseconds, all
measured in interleaved rounds in one run:

- ``import pytest``: the baseline every session pays anyway;
- the plugin (``nitrokit.enclave.pytest_plugin``) on top of pytest: what installing nitrokit costs a session
  that uses none of its fixtures (ratio: vs pytest);
- what the plugin loaded before it went lazy: the simulated KMS, simulated NSM and fixture PKI modules it
  imported at the top (ratio: vs pytest), for comparison;
- ``nitrokit --help`` as a whole process vs ``python -c pass`` (ratio).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, print_table, row

_EAGER = "import nitrokit.kms.server, nitrokit.enclave.nsm.simulated, nitrokit.testing"
_LINE = re.compile(r"^import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$")


def _import_us(code: str, module: str) -> int:
    """Cumulative microseconds ``python -X importtime -c code`` reports for the top-level import ``module``."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    total = 0
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match and match.group(3) == module and not match.group(2):
            total += int(match.group(1))
    return total


def _process_ms(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    return (time.perf_counter() - start) * 1000


def run(seconds: float = 2.0) -> list[Row]:
    rounds = max(5, int(seconds * 4))
    samples: dict[str, list[float]] = {"pytest": [], "plugin": [], "eager": [], "python": [], "cli": []}
    nitrokit = str(Path(sys.executable).with_name("nitrokit"))
    for _ in range(rounds):
        samples["pytest"].append(_import_us("import pytest", "pytest"))
        samples["plugin"].append(_import_us("import pytest, nitrokit.enclave.pytest_plugin",
                                            "nitrokit.enclave.pytest_plugin"))
        samples["eager"].append(sum(_import_us(f"import pytest; {_EAGER}", name) for name in
                                    ("nitrokit.kms.server", "nitrokit.enclave.nsm.simulated")))
        samples["python"].append(_process_ms([sys.executable, "-c", "pass"]))
        samples["cli"].append(_process_ms([nitrokit, "--help"]))
    median = {name: statistics.median(values) for name, values in samples.items()}
    spread = {name: (min(values), max(values)) for name, values in samples.items()}
    base = median["pytest"]

    def note(name: str, unit: str) -> str:
        low, high = spread[name]
        return f"median of {rounds}, range {low:,.0f}-{high:,.0f} {unit}"

    return [
        row("import pytest (baseline)", base / 1000, "ms", note=note("pytest", "us")),
        row("nitrokit pytest plugin, on top of pytest", median["plugin"] / 1000, "ms",
            ratio=median["plugin"] / base, note=note("plugin", "us")),
        row("what the plugin imported before (eager)", median["eager"] / 1000, "ms",
            ratio=median["eager"] / base, note="simulated KMS + NSM + fixture PKI; " + note("eager", "us")),
        row("python -c pass (baseline)", median["python"], "ms", note=note("python", "ms")),
        row("nitrokit --help (whole process)", median["cli"], "ms", ratio=median["cli"] / median["python"],
            note=note("cli", "ms")),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="sets the number of rounds (4 per second)")
    args = parser.parse_args()
    print_table("start-up cost (python -X importtime)", run(args.seconds))


if __name__ == "__main__":
    main()
