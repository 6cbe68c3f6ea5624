"""The rig of the round-trip benchmarks: the simulated KMS and a parent as child processes, enclaves as threads.

Shared by bench_generate_random.py and bench_key_operations.py: the two processes (``nitrokit kms-sim`` and
``nitrokit parent`` on a Unix socket, on loopback), an enclave calling KMS itself with boto3 (the "direct"
path), rounds of back-to-back calls from N threads interleaved between the paths, each child's CPU time from
/proc, percentiles, the crypto-floor primitives and the rows comparing the paths with a floor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench._harness import Row, row
from nitrokit import cms
from nitrokit.cms._build import OAEP_SHA256
from nitrokit.enclave.keys import EphemeralKeyPair
from nitrokit.enclave.kms_client import IdentityPolicy
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.kms import DEFAULT_ACCESS_KEY
from nitrokit.testing.processes import NitrokitProcess, simulator_environment

REGION = "us-east-1"
#: one identity for the whole run (the simulated KMS does not check a document's age)
KEEP_IDENTITY = IdentityPolicy(max_uses=10**9, max_age_seconds=86400)
PATHS = ("parent", "direct")

Caller = Callable[[], object]


@contextlib.contextmanager
def processes() -> Iterator[tuple[NitrokitProcess, NitrokitProcess]]:
    """(kms, parent): ``nitrokit kms-sim`` (its URL is ``kms.first_line``) and ``nitrokit parent`` relaying to it
    from a Unix socket (``parent.first_line``), production defaults, both stopped on exit."""
    logging.getLogger("nitrokit").setLevel(logging.WARNING)
    env = simulator_environment()
    with tempfile.TemporaryDirectory(prefix="nitrokit-bench-") as scratch, \
            NitrokitProcess("kms-sim", "--log-level", "WARNING", "--max-connections", "256", env=env) as kms, \
            NitrokitProcess("parent", "--listen", f"unix://{Path(scratch) / 'parent.sock'}", "--endpoint-url",
                            kms.first_line, "--region", REGION, "--log-level", "warning", env=env) as parent:
        yield kms, parent


def boto3_client(url: str, session: Any) -> Any:
    """A KMS client of ``session`` for the simulated KMS at ``url`` (its default credentials, no proxy)."""
    from botocore.config import Config

    return session.client(
        "kms", endpoint_url=url, region_name=REGION, aws_access_key_id=DEFAULT_ACCESS_KEY.access_key_id,
        aws_secret_access_key=DEFAULT_ACCESS_KEY.secret_access_key,
        config=Config(retries={"mode": "standard"}, proxies={}))


class Direct:
    """One enclave calling the simulated KMS itself: a boto3 client, a key pair, a document carrying it."""

    def __init__(self, url: str, session: Any) -> None:
        self.key = EphemeralKeyPair.generate()
        document = SimulatedNsm().attestation(public_key=self.key.public_key_der)
        self.recipient = {"AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}
        self.client = boto3_client(url, session)

    def call(self, method: str, clear_member: str, **params: Any) -> tuple[dict[str, Any], bytes]:
        """boto3 ``method`` with the Recipient; (the answer, the envelope opened here). ``clear_member`` is the
        secret's member, which must be absent, as the enclave client checks."""
        answer: dict[str, Any] = getattr(self.client, method)(**params, Recipient=self.recipient)
        if answer.get(clear_member) is not None:
            raise RuntimeError(f"the simulated KMS answered {clear_member} beside the envelope")
        return answer, cms.decrypt(answer["CiphertextForRecipient"], self.key.private_key)


def run_round(callers: list[Caller], seconds: float, *,
              untimed_first: bool = False) -> tuple[float, list[float], list[object]]:
    """Every caller in its own thread, calling back to back for ``seconds``; (calls/s, latencies, results).

    With ``untimed_first``, each caller's first call counts in calls/s but its latency is left out: every
    caller starts it at the same instant, a burst that back-to-back calls in the steady state never see.
    """
    latencies: list[list[float]] = [[] for _ in callers]
    values: list[list[object]] = [[] for _ in callers]
    start = threading.Barrier(len(callers) + 1)
    deadline = 0.0

    def work(index: int) -> None:
        call, mine, got = callers[index], latencies[index], values[index]
        start.wait()
        first = untimed_first
        while True:
            began = time.perf_counter()
            if began >= deadline:
                return
            got.append(call())
            if not first:
                mine.append(time.perf_counter() - began)
            first = False

    threads = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(len(callers))]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    pooled = [latency for mine in latencies for latency in mine]
    results = [value for got in values for value in got]
    return len(results) / elapsed, pooled, results


def cpu_seconds(process: NitrokitProcess) -> float:
    """User + system CPU time the child has used so far (/proc/PID/stat)."""
    assert process.process is not None
    return pid_cpu_seconds(process.process.pid)


def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


@dataclass
class PathFigures:
    """One path at one concurrency: each round's calls/s and every call's latency."""

    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.rates)


@dataclass
class Measured:
    """Both paths at one concurrency, and the children's CPU seconds during the rounds through the parent."""

    paths: dict[str, PathFigures]
    cpu: dict[str, float]


def measure(paths: Mapping[str, list[Caller]], *, seconds: float, rounds: int, kms: NitrokitProcess,
            parent: NitrokitProcess, results: Callable[[list[object]], None] | None = None) -> Measured:
    """``rounds`` rounds of each path, interleaved (a disturbance hits both alike), ``seconds`` in all per path.

    ``results``, if given, sees each round's return values (GenerateRandom checks they are all distinct).
    """
    measured = Measured({name: PathFigures() for name in paths}, {"parent": 0.0, "kms": 0.0})
    for _ in range(rounds):
        for name, callers in paths.items():
            used = cpu_seconds(parent), cpu_seconds(kms)
            calls_per_second, latencies, values = run_round(callers, seconds / rounds)
            if name == "parent":
                measured.cpu["parent"] += cpu_seconds(parent) - used[0]
                measured.cpu["kms"] += cpu_seconds(kms) - used[1]
            if results is not None:
                results(values)
            measured.paths[name].rates.append(calls_per_second)
            measured.paths[name].latencies += latencies
    return measured


def path_rows(label: str, measured: Measured, floor_us: float, *, spread: bool = False) -> list[Row]:
    """Calls/s (best round), p50 and p99 of each path against the floor (one call's crypto, in microseconds),
    and the latency the parent adds; with ``spread``, each round's range in the notes."""
    through, direct = measured.paths["parent"], measured.paths["direct"]
    floor_rate = 1e6 / floor_us
    ratios = [p / d for p, d in zip(through.rates, direct.rates, strict=True)]
    rows: list[Row] = []
    for name, figures, note in (
        ("through the parent", through, f"{through.best / direct.best:.2f}x direct"
         + (f" (rounds {min(ratios):.2f}-{max(ratios):.2f})" if spread else "")),
        ("direct to KMS (boto3)", direct, ""),
    ):
        counted = f"{len(figures.latencies)} calls timed"
        if spread:
            counted += f"; rounds {min(figures.rates):,.0f}-{max(figures.rates):,.0f} calls/s ({len(figures.rates)})"
        p50, p99 = percentile(figures.latencies, 0.50) * 1000, percentile(figures.latencies, 0.99) * 1000
        rows += [
            row(f"{label} {name}: calls/s", figures.best, "calls/s", ratio=figures.best / floor_rate,
                note="; ".join(part for part in (note, counted) if part)),
            row(f"{label} {name}: p50", p50, "ms", ratio=p50 * 1000 / floor_us, note="ratio: vs floor latency"),
            row(f"{label} {name}: p99", p99, "ms", ratio=p99 * 1000 / floor_us),
        ]
    rows.append(row(f"{label} parent's added latency (p50)",
                    (percentile(through.latencies, 0.5) - percentile(direct.latencies, 0.5)) * 1000, "ms",
                    note="through the parent - direct"))
    return rows


def cpu_rows(label: str, cpu: Mapping[str, float], relayed: int, floor_us: float) -> list[Row]:
    """The parent's and the simulated KMS's CPU per call through the parent, against the floor."""
    rows = []
    for name, title, note in (("parent", "parent process CPU per relayed call", "asyncio, wire JSON, boto3 call"),
                              ("kms", "simulated KMS process CPU per call", "HTTP, SigV4, attestation, envelope")):
        per_call = cpu[name] / relayed * 1000
        rows.append(row(f"{label}{title}", per_call, "ms", ratio=per_call * 1000 / floor_us,
                        note=f"{note}; over the {relayed} calls through the parent"))
    return rows


def envelope_primitives() -> dict[str, Caller]:
    """The crypto of every Recipient call: the enclave's RSA-2048 OAEP decryption of the envelope's key, KMS's
    OAEP encryption of it and KMS's P-384 check of the document's signature (a warm chain: one verification)."""
    key = EphemeralKeyPair.generate()
    public = key.public_key
    ciphertext = public.encrypt(b"k" * 32, OAEP_SHA256)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    message = b"x" * 4096  # about a document's COSE Sig_structure
    signature = ec_key.sign(message, ec.ECDSA(hashes.SHA384()))
    ec_public = ec_key.public_key()
    return {
        "decrypt": lambda: key.private_key.decrypt(ciphertext, OAEP_SHA256),
        "encrypt": lambda: public.encrypt(b"k" * 32, OAEP_SHA256),
        "verify": lambda: ec_public.verify(signature, message, ec.ECDSA(hashes.SHA384())),
    }


def envelope_floor_us(floor: Mapping[str, float]) -> float:
    """One GenerateRandom call's crypto floor in microseconds, from :func:`envelope_primitives`' rates."""
    return sum(1e6 / floor[name] for name in ("decrypt", "encrypt", "verify"))


def envelope_floor_rows(floor: Mapping[str, float]) -> list[Row]:
    """The floor's rows: each primitive's rate, and the three as one call (the ratio 1.00x the others are against)."""
    floor_us = envelope_floor_us(floor)
    return [
        row("floor: RSA-2048 OAEP decrypt", floor["decrypt"], "ops/s", note="the enclave opens the envelope"),
        row("floor: RSA-2048 OAEP encrypt", floor["encrypt"], "ops/s", note="KMS builds the envelope"),
        row("floor: P-384 ECDSA verify", floor["verify"], "ops/s", note="KMS checks the document (warm chain)"),
        row("floor: the three, one call", 1e6 / floor_us, "calls/s", ratio=1.0,
            note=f"{floor_us / 1000:.2f} ms a call on one core; the ratios below are against it"),
    ]


def machine() -> str:
    return (f"{os.cpu_count()} cores, shared by the simulated KMS, the parent and the enclaves' threads; "
            f"Python {sys.version.split()[0]}")
