"""GenerateRandom round trips through the parent, beside the same calls straight to KMS and the crypto floor.

    python bench/bench_generate_random.py [--seconds S]

Three real processes, on loopback (this machine has 2 cores: they share them, with the enclaves' threads):

- the simulated KMS (``nitrokit kms-sim``: the KMS JSON protocol, SigV4, attestation checked);
- the parent proxy (``nitrokit parent``, production defaults) on a Unix socket, relaying with boto3;
- this process: the enclaves, one thread each, each a :class:`~nitrokit.enclave.kms_client.KmsClient` with its own
  simulated NSM and RSA-2048 identity: attestation document in, CiphertextForRecipient out, opened here.

Figures at 1, 8 and 64 concurrent enclaves, each calling back to back:

- through the parent: ``KmsClient.generate_random(32)`` (enclave -> parent -> KMS and back, then decrypt);
- direct: the same enclaves' work without the parent: a boto3 client per enclave calls the simulated KMS's
  GenerateRandom with the same kind of Recipient, and the answer is opened the same way. The difference is
  the parent's hop (wire protocol, the parent's asyncio loop and its own boto3 call);
- the crypto floor, measured in the same run: one RSA-2048 OAEP decryption (the enclave opens the envelope)
  + one RSA-2048 OAEP encryption (KMS builds it) + one P-384 ECDSA verification (KMS checks the document's
  signature with a warm chain), one after another on one core. Ratios are against it: calls/s / floor
  calls/s, and latency / floor latency.

Calls/s is the best of interleaved rounds (bench/_harness.py's rule); p50/p99 pool every round's calls. The
identities are made before timing and kept for the whole run (by default KmsClient replaces its key every
100 calls: one RSA-2048 key generation, shown in its own row, that the figures leave out).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, best_rates, print_table, rate, row
from nitrokit import cms
from nitrokit.cms._build import OAEP_SHA256
from nitrokit.enclave.keys import EphemeralKeyPair
from nitrokit.enclave.kms_client import IdentityPolicy, KmsClient
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.kms import DEFAULT_ACCESS_KEY
from nitrokit.testing.processes import NitrokitProcess, simulator_environment

CONCURRENCY = (1, 8, 64)
NUMBER_OF_BYTES = 32
ROUNDS = 3
REGION = "us-east-1"
#: one identity for the whole run (the simulated KMS does not check a document's age)
KEEP_IDENTITY = IdentityPolicy(max_uses=10**9, max_age_seconds=86400)


class DuplicateValueError(RuntimeError):
    """Two calls returned the same bytes: the benchmark stops, as a test would."""


class _Direct:
    """One enclave calling the simulated KMS itself: a boto3 client, a key pair, a document carrying it."""

    def __init__(self, url: str, session: Any) -> None:
        from botocore.config import Config

        self.key = EphemeralKeyPair.generate()
        document = SimulatedNsm().attestation(public_key=self.key.public_key_der)
        self.recipient = {"AttestationDocument": document, "KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256"}
        self.client = session.client(
            "kms", endpoint_url=url, region_name=REGION, aws_access_key_id=DEFAULT_ACCESS_KEY.access_key_id,
            aws_secret_access_key=DEFAULT_ACCESS_KEY.secret_access_key,
            config=Config(retries={"mode": "standard"}, proxies={}))

    def generate_random(self, number_of_bytes: int) -> bytes:
        answer = self.client.generate_random(NumberOfBytes=number_of_bytes, Recipient=self.recipient)
        value = cms.decrypt(answer["CiphertextForRecipient"], self.key.private_key)
        if len(value) != number_of_bytes or answer.get("Plaintext") is not None:
            raise RuntimeError("the simulated KMS answered something else than asked")
        return value


def _round(callers: list[Callable[[int], bytes]], seconds: float, seen: set[bytes]) -> tuple[float, list[float]]:
    """Every caller in its own thread, calling back to back for ``seconds``; (calls/s, latencies)."""
    latencies: list[list[float]] = [[] for _ in callers]
    values: list[list[bytes]] = [[] for _ in callers]
    start = threading.Barrier(len(callers) + 1)
    deadline = 0.0

    def work(index: int) -> None:
        call, mine, got = callers[index], latencies[index], values[index]
        start.wait()
        while True:
            began = time.perf_counter()
            if began >= deadline:
                return
            got.append(call(NUMBER_OF_BYTES))
            mine.append(time.perf_counter() - began)

    threads = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(len(callers))]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for got in values:
        for value in got:
            if value in seen:
                raise DuplicateValueError("a GenerateRandom value came back twice")
            seen.add(value)
    pooled = [latency for mine in latencies for latency in mine]
    return len(pooled) / elapsed, pooled


def _cpu_seconds(process: NitrokitProcess) -> float:
    """User + system CPU time the child has used so far (/proc/PID/stat)."""
    assert process.process is not None
    fields = Path(f"/proc/{process.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


def _floor(seconds: float) -> dict[str, float]:
    key = EphemeralKeyPair.generate()
    public = key.public_key
    ciphertext = public.encrypt(b"k" * 32, OAEP_SHA256)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    message = b"x" * 4096  # about a document's COSE Sig_structure
    signature = ec_key.sign(message, ec.ECDSA(hashes.SHA384()))
    ec_public = ec_key.public_key()
    return best_rates({
        "decrypt": lambda: key.private_key.decrypt(ciphertext, OAEP_SHA256),
        "encrypt": lambda: public.encrypt(b"k" * 32, OAEP_SHA256),
        "verify": lambda: ec_public.verify(signature, message, ec.ECDSA(hashes.SHA384())),
    }, seconds=seconds)


def run(seconds: float = 2.0) -> list[Row]:
    """Measure, spending about ``seconds`` on each concurrency and path; return the table's rows."""
    import boto3

    logging.getLogger("nitrokit").setLevel(logging.WARNING)
    env = simulator_environment()
    floor = _floor(seconds)
    floor_us = sum(1e6 / floor[name] for name in ("decrypt", "encrypt", "verify"))
    keygen = rate(EphemeralKeyPair.generate, seconds=min(seconds, 2.0), warmup=1)

    results: dict[tuple[str, int], tuple[float, list[float]]] = {}
    cpu = {"parent": 0.0, "kms": 0.0}  # CPU seconds used by each child during the rounds through the parent
    seen: set[bytes] = set()
    with tempfile.TemporaryDirectory(prefix="nitrokit-bench-") as scratch, \
            NitrokitProcess("kms-sim", "--log-level", "WARNING", "--max-connections", "256", env=env) as kms, \
            NitrokitProcess("parent", "--listen", f"unix://{Path(scratch) / 'parent.sock'}", "--endpoint-url",
                            kms.first_line, "--region", REGION, "--log-level", "warning", env=env) as parent:
        most = max(CONCURRENCY)
        enclaves = [KmsClient(nsm=SimulatedNsm(), parent=parent.first_line, identity=KEEP_IDENTITY)
                    for _ in range(most)]
        session = boto3.session.Session()  # one session (its models loaded once), a client per enclave
        directs = [_Direct(kms.first_line, session) for _ in range(most)]
        try:
            for enclave in enclaves:  # identities made, connections open, models loaded
                enclave.generate_random(NUMBER_OF_BYTES)
            for direct in directs:
                direct.generate_random(NUMBER_OF_BYTES)
            for concurrency in CONCURRENCY:
                paths: dict[str, list[Callable[[int], bytes]]] = {
                    "parent": [enclave.generate_random for enclave in enclaves[:concurrency]],
                    "direct": [direct.generate_random for direct in directs[:concurrency]],
                }
                pooled: dict[str, list[float]] = {name: [] for name in paths}
                best: dict[str, float] = dict.fromkeys(paths, 0.0)
                for _ in range(ROUNDS):  # interleaved: a disturbance hits both paths alike
                    for name, callers in paths.items():
                        used = _cpu_seconds(parent), _cpu_seconds(kms)
                        calls_per_second, latencies = _round(callers, seconds / ROUNDS, seen)
                        if name == "parent":
                            cpu["parent"] += _cpu_seconds(parent) - used[0]
                            cpu["kms"] += _cpu_seconds(kms) - used[1]
                        best[name] = max(best[name], calls_per_second)
                        pooled[name] += latencies
                for name in paths:
                    results[name, concurrency] = best[name], pooled[name]
        finally:
            for enclave in enclaves:
                enclave.close()

    floor_rate = 1e6 / floor_us
    rows = [
        row("floor: RSA-2048 OAEP decrypt", floor["decrypt"], "ops/s", note="the enclave opens the envelope"),
        row("floor: RSA-2048 OAEP encrypt", floor["encrypt"], "ops/s", note="KMS builds the envelope"),
        row("floor: P-384 ECDSA verify", floor["verify"], "ops/s", note="KMS checks the document (warm chain)"),
        row("floor: the three, one call", floor_rate, "calls/s", ratio=1.0,
            note=f"{floor_us / 1000:.2f} ms a call on one core; the ratios below are against it"),
    ]
    for concurrency in CONCURRENCY:
        through_rate, through_latencies = results["parent", concurrency]
        direct_rate, direct_latencies = results["direct", concurrency]
        label = f"x{concurrency:<2}"
        for name, calls_per_second, latencies, note in (
            ("through the parent", through_rate, through_latencies,
             f"{through_rate / direct_rate:.2f}x direct; {len(through_latencies)} calls timed"),
            ("direct to KMS (boto3)", direct_rate, direct_latencies, f"{len(direct_latencies)} calls timed"),
        ):
            p50, p99 = _percentile(latencies, 0.50) * 1000, _percentile(latencies, 0.99) * 1000
            rows += [
                row(f"{label} {name}: calls/s", calls_per_second, "calls/s", ratio=calls_per_second / floor_rate,
                    note=note),
                row(f"{label} {name}: p50", p50, "ms", ratio=p50 * 1000 / floor_us, note="ratio: vs floor latency"),
                row(f"{label} {name}: p99", p99, "ms", ratio=p99 * 1000 / floor_us),
            ]
        rows.append(row(f"{label} parent's added latency (p50)",
                        (_percentile(through_latencies, 0.5) - _percentile(direct_latencies, 0.5)) * 1000, "ms",
                        note="through the parent - direct"))
    relayed = sum(len(results["parent", concurrency][1]) for concurrency in CONCURRENCY)
    for name, label, note in (("parent", "parent process CPU per relayed call", "asyncio, wire JSON, boto3 call"),
                              ("kms", "simulated KMS process CPU per call", "HTTP, SigV4, attestation, envelope")):
        per_call = cpu[name] / relayed * 1000
        rows.append(row(label, per_call, "ms", ratio=per_call * 1000 / floor_us,
                        note=f"{note}; over the {relayed} calls through the parent"))
    rows.append(row("RSA-2048 key generation (a new identity)", 1000 / keygen, "ms",
                    ratio=1e6 / keygen / floor_us,
                    note="KmsClient: once per 100 calls by default; left out of the figures above"))
    return rows


def machine() -> str:
    return (f"{os.cpu_count()} cores, shared by the simulated KMS, the parent and the enclaves' threads; "
            f"Python {sys.version.split()[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per concurrency and path")
    args = parser.parse_args()
    rows: list[Any] = run(args.seconds)
    print_table(f"GenerateRandom with Recipient, 32 bytes ({machine()})", rows)


if __name__ == "__main__":
    main()
