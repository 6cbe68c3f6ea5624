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
100 calls: one RSA-2048 key generation, shown in its own row, that the figures leave out). The rig (the two
processes, the direct path, the rounds) is bench/_roundtrip.py, shared with bench_key_operations.py.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Row, best_rates, print_table, rate, row
from bench._roundtrip import (
    KEEP_IDENTITY,
    Caller,
    Direct,
    Measured,
    cpu_rows,
    envelope_floor_rows,
    envelope_floor_us,
    envelope_primitives,
    machine,
    measure,
    path_rows,
    processes,
)
from nitrokit.enclave.keys import EphemeralKeyPair
from nitrokit.enclave.kms_client import KmsClient
from nitrokit.enclave.nsm import SimulatedNsm

CONCURRENCY = (1, 8, 64)
NUMBER_OF_BYTES = 32
ROUNDS = 3


class DuplicateValueError(RuntimeError):
    """Two calls returned the same bytes: the benchmark stops, as a test would."""


def _direct_call(direct: Direct) -> Caller:
    def call() -> bytes:
        _, value = direct.call("generate_random", "Plaintext", NumberOfBytes=NUMBER_OF_BYTES)
        if len(value) != NUMBER_OF_BYTES:
            raise RuntimeError("the simulated KMS answered something else than asked")
        return value
    return call


def _enclave_call(enclave: KmsClient) -> Caller:
    return lambda: enclave.generate_random(NUMBER_OF_BYTES)


def run(seconds: float = 2.0) -> list[Row]:
    """Measure, spending about ``seconds`` on each concurrency and path; return the table's rows."""
    import boto3

    floor = best_rates(envelope_primitives(), seconds=seconds)
    floor_us = envelope_floor_us(floor)
    keygen = rate(EphemeralKeyPair.generate, seconds=min(seconds, 2.0), warmup=1)

    results: dict[int, Measured] = {}
    seen: set[object] = set()

    def distinct(values: list[object]) -> None:
        for value in values:
            if value in seen:
                raise DuplicateValueError("a GenerateRandom value came back twice")
            seen.add(value)

    with processes() as (kms, parent):
        most = max(CONCURRENCY)
        enclaves = [KmsClient(nsm=SimulatedNsm(), parent=parent.first_line, identity=KEEP_IDENTITY)
                    for _ in range(most)]
        session = boto3.session.Session()  # one session (its models loaded once), a client per enclave
        directs = [_direct_call(Direct(kms.first_line, session)) for _ in range(most)]
        try:
            for enclave in enclaves:  # identities made, connections open, models loaded
                enclave.generate_random(NUMBER_OF_BYTES)
            for direct in directs:
                direct()
            for concurrency in CONCURRENCY:
                paths: dict[str, list[Callable[[], object]]] = {
                    "parent": [_enclave_call(enclave) for enclave in enclaves[:concurrency]],
                    "direct": directs[:concurrency],
                }
                results[concurrency] = measure(paths, seconds=seconds, rounds=ROUNDS, kms=kms, parent=parent,
                                               results=distinct)
        finally:
            for enclave in enclaves:
                enclave.close()

    rows = envelope_floor_rows(floor)
    for concurrency in CONCURRENCY:
        rows += path_rows(f"x{concurrency:<2}", results[concurrency], floor_us)
    cpu = {name: sum(measured.cpu[name] for measured in results.values()) for name in ("parent", "kms")}
    relayed = sum(len(measured.paths["parent"].latencies) for measured in results.values())
    rows += cpu_rows("", cpu, relayed, floor_us)
    rows.append(row("RSA-2048 key generation (a new identity)", 1000 / keygen, "ms",
                    ratio=1e6 / keygen / floor_us,
                    note="KmsClient: once per 100 calls by default; left out of the figures above"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per concurrency and path")
    args = parser.parse_args()
    rows: list[Any] = run(args.seconds)
    print_table(f"GenerateRandom with Recipient, 32 bytes ({machine()})", rows)


if __name__ == "__main__":
    main()
