"""Load on the parent proxy: many enclave connections at once, and honest clients beside hostile ones.

    python bench/load.py [--connections 200] [--calls 50] [--honest-clients 16] [--honest-calls 25]

What runs where (2 cores here: every process below shares them):

- the simulated KMS (:class:`nitrokit.kms.SimulatedKms`) in this process, on a loopback port;
- the parent proxy as a real ``nitrokit parent`` child process on a Unix socket, with the production defaults
  except ``--max-connections`` (raised to fit the load; the default is 128);
- the enclaves: one thread per connection in this process, each a :class:`~nitrokit.wire.client.WireClient`
  making GenerateRandom calls with a Recipient and opening each answer with ``nitrokit.cms.decrypt``. They
  share a few pre-made identities (RSA-2048 key + simulated-NSM attestation document), one per 16
  connections: ``KmsClient`` would make a key per connection, and 200 key generations would measure RSA key
  generation, not the parent. There are no retries: a single failed call is a failure of the run.
- hostile peers, for :func:`attack`, in a separate process (so their CPU use does not take this process's
  GIL from the honest clients and the simulated KMS): stalled clients (half a frame, then silence),
  clients that vanish mid-call (a whole request, then a close before the answer) or mid-frame, and floods of
  garbage frames on fresh connections.

Figures: calls per second, latency p50/p99/max, and the parent's memory (VmRSS from /proc before and after,
and VmHWM, its peak), its open file descriptors at the peak of the load. tests/test_load.py asserts the
guarantees (nothing lost or duplicated, no failure, bounded memory, honest p99 under attack bounded).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import multiprocessing.synchronize
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nitrokit import cms
from nitrokit.enclave.keys import EphemeralKeyPair
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.kms import SimulatedKms
from nitrokit.testing.processes import NitrokitProcess, simulator_environment
from nitrokit.wire.address import connect, parse_address
from nitrokit.wire.client import WireClient
from nitrokit.wire.errors import WireError
from nitrokit.wire.framing import encode_frame
from nitrokit.wire.kms import generate_random_request, parse_generate_random_response
from nitrokit.wire.messages import Request, encode_request

CONNECTIONS = 200
CALLS = 50
NUMBER_OF_BYTES = 32
CONNECTIONS_PER_IDENTITY = 16
#: --max-connections for the parent: the load, the honest clients and the hostile ones all fit under it.
PARENT_MAX_CONNECTIONS = 512
#: one call's limit on the client side (the parent's own KMS call, with its retries, fits well inside)
CALL_TIMEOUT = 60.0

# The attack's shape (see attack()).
STALLED = 48
VANISHING = 4
FLOODERS = 2
VANISH_PAUSE = 0.02


class LoadFailure(Exception):
    """A call came back wrong: another length than asked, or an answer that does not open."""


@dataclass(frozen=True)
class Identity:
    """What an enclave sends and keeps: an attestation document carrying the public key, and the private key."""

    key: EphemeralKeyPair
    document: bytes


def make_identities(count: int) -> list[Identity]:
    nsm = SimulatedNsm()
    identities = []
    for _ in range(count):
        key = EphemeralKeyPair.generate()
        identities.append(Identity(key, nsm.attestation(public_key=key.public_key_der)))
    return identities


def generate_random(wire: WireClient, identity: Identity, number_of_bytes: int = NUMBER_OF_BYTES) -> bytes:
    """One GenerateRandom with Recipient over ``wire``, opened with the identity's key and checked."""
    answer = wire.call("GenerateRandom", generate_random_request(number_of_bytes,
                                                                 attestation_document=identity.document))
    ciphertext = parse_generate_random_response(answer).ciphertext_for_recipient
    if ciphertext is None:
        raise LoadFailure("no CiphertextForRecipient")
    value = cms.decrypt(ciphertext, identity.key.private_key)
    if len(value) != number_of_bytes:
        raise LoadFailure(f"{len(value)} bytes, {number_of_bytes} asked")
    return value


# -- the parent's process ---------------------------------------------------------------------------------------


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise LookupError(f"{field_name} not in /proc/{pid}/status")


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` now (VmRSS), KiB."""
    return _status_kib(pid, "VmRSS")


def peak_rss_kib(pid: int) -> int:
    """The highest resident memory of ``pid`` so far (VmHWM), KiB."""
    return _status_kib(pid, "VmHWM")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Rig:
    """The simulated KMS in this process and the parent as a child process on a Unix socket."""

    def __init__(self, *, parent_args: Sequence[str] = ()) -> None:
        self._scratch = tempfile.TemporaryDirectory(prefix="nitrokit-load-")
        self.socket_path = Path(self._scratch.name) / "parent.sock"
        self.kms = SimulatedKms()
        self._parent_args = tuple(parent_args)
        self.parent: NitrokitProcess | None = None

    @property
    def address(self) -> str:
        assert self.parent is not None
        return self.parent.first_line

    @property
    def pid(self) -> int:
        assert self.parent is not None and self.parent.process is not None
        return self.parent.process.pid

    def __enter__(self) -> Rig:
        self.kms.start()
        try:
            self.parent = NitrokitProcess(
                "parent", "--listen", f"unix://{self.socket_path}", "--endpoint-url", self.kms.url,
                "--region", "us-east-1", "--max-connections", str(PARENT_MAX_CONNECTIONS),
                "--max-connections-per-peer", str(PARENT_MAX_CONNECTIONS), *self._parent_args,
                env=simulator_environment())
            self.parent.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the parent (SIGTERM; its exit code is kept in :attr:`parent_exit`), the simulator, the files."""
        self.parent_exit = self.parent.stop() if self.parent is not None else None
        self.kms.stop()
        self._scratch.cleanup()

    def parent_log(self) -> str:
        return self.parent.stderr_text() if self.parent is not None else ""


# -- measured runs ------------------------------------------------------------------------------------------------


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` in 0..1) of ``samples``."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class CallRecord:
    """What a set of client threads got back."""

    values: list[bytes] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: CallRecord) -> None:
        self.values += other.values
        self.latencies += other.latencies
        self.failures += other.failures

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 0.99) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies, default=float("nan")) * 1000

    @property
    def calls_per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else float("nan")


def drive(address: str, identities: Sequence[Identity], *, clients: int, calls: int,
          on_started: Callable[[], None] | None = None) -> CallRecord:
    """``clients`` threads, each on its own connection, making ``calls`` calls one after another.

    All threads connect first, then start calling together; each call's failure is recorded (type and
    code), never retried. Returns every value, latency and failure, and the wall time of the calls.
    """
    records = [CallRecord() for _ in range(clients)]
    wires = [WireClient(address, connect_timeout=10.0, timeout=CALL_TIMEOUT) for _ in range(clients)]
    ready = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        record, wire = records[index], wires[index]
        identity = identities[index // CONNECTIONS_PER_IDENTITY % len(identities)]
        try:
            wire._connection()  # connect before the start line, so every connection is open at once
        except (WireError, OSError) as exc:
            record.failures.append(f"connect: {type(exc).__name__}: {exc}")
        ready.wait()
        for _ in range(calls):
            started = time.perf_counter()
            try:
                value = generate_random(wire, identity)
            except Exception as exc:  # recorded, counted, reported: the run's figures say what failed
                record.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            record.latencies.append(time.perf_counter() - started)
            record.values.append(value)
        wire.close()

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait(timeout=120)
    started = time.perf_counter()
    if on_started is not None:
        on_started()
    for thread in threads:
        thread.join()
    total = CallRecord(seconds=time.perf_counter() - started)
    for record in records:
        total.add(record)
    return total


@dataclass
class LoadResult:
    connections: int
    calls_per_connection: int
    record: CallRecord
    rss_before_kib: int
    rss_after_kib: int
    peak_rss_kib: int
    peak_fds: int
    fds_before: int

    @property
    def expected(self) -> int:
        return self.connections * self.calls_per_connection

    @property
    def distinct(self) -> int:
        return len(set(self.record.values))

    def lines(self) -> list[str]:
        record = self.record
        return [
            f"{self.connections} connections x {self.calls_per_connection} GenerateRandom calls "
            f"({NUMBER_OF_BYTES} bytes, Recipient) through the parent (a child process, Unix socket)",
            f"  answered {len(record.values)}/{self.expected}, distinct {self.distinct}, "
            f"failures {len(record.failures)}",
            f"  {record.calls_per_second:,.0f} calls/s over {record.seconds:.1f} s; "
            f"latency p50 {record.p50_ms:.0f} ms, p99 {record.p99_ms:.0f} ms, max {record.max_ms:.0f} ms",
            f"  parent RSS before {self.rss_before_kib / 1024:.1f} MiB, after {self.rss_after_kib / 1024:.1f} MiB "
            f"(growth {(self.rss_after_kib - self.rss_before_kib) / 1024:+.1f} MiB), peak (VmHWM) "
            f"{self.peak_rss_kib / 1024:.1f} MiB",
            f"  parent open file descriptors: {self.fds_before} before, {self.peak_fds} at the peak",
        ]


def run_load(rig: Rig, identities: Sequence[Identity], *, connections: int = CONNECTIONS,
             calls: int = CALLS) -> LoadResult:
    """Warm the parent up, take its RSS, run the load while sampling its file descriptors, take its RSS."""
    with WireClient(rig.address) as wire:
        for _ in range(3):  # boto3's first calls load models and open the pool: not the load's memory
            generate_random(wire, identities[0])
    pid = rig.pid
    before, fds_before = rss_kib(pid), open_fds(pid)
    peak_fds = fds_before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak_fds
        while not done.wait(0.05):
            with contextlib.suppress(OSError):
                peak_fds = max(peak_fds, open_fds(pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        record = drive(rig.address, identities, clients=connections, calls=calls)
    finally:
        done.set()
        watcher.join()
    time.sleep(0.2)  # let the parent close the finished connections
    return LoadResult(connections=connections, calls_per_connection=calls, record=record, rss_before_kib=before,
                      rss_after_kib=rss_kib(pid), peak_rss_kib=peak_rss_kib(pid), peak_fds=peak_fds,
                      fds_before=fds_before)


# -- hostile peers ------------------------------------------------------------------------------------------------


def _stall(address: str, stop: multiprocessing.synchronize.Event, counts: Any) -> None:
    """Send a length prefix and half the body it announces, then nothing, until the parent gives up."""
    target = parse_address(address)
    while not stop.is_set():
        try:
            sock = connect(target, timeout=5)
        except WireError:
            stop.wait(0.1)
            continue
        with sock:
            try:
                sock.sendall((1000).to_bytes(4, "big") + b"{" * 500)
                with counts.get_lock():
                    counts[0] += 1
                sock.settimeout(0.2)
                while not stop.is_set():  # silence; the parent's read timeout ends it (an error frame, a close)
                    try:
                        if not sock.recv(65536):
                            break
                    except TimeoutError:
                        continue
            except OSError:
                pass


def _vanish(address: str, stop: multiprocessing.synchronize.Event, counts: Any, document: bytes) -> None:
    """Alternately: a whole request then a close before the answer, and half a request then a close."""
    target = parse_address(address)
    request = encode_frame(encode_request(Request(
        operation="GenerateRandom", request=generate_random_request(NUMBER_OF_BYTES, attestation_document=document))))
    whole = True
    while not stop.is_set():
        try:
            with connect(target, timeout=5) as sock:
                sock.sendall(request if whole else request[: len(request) // 2])
        except (WireError, OSError):
            pass
        else:
            with counts.get_lock():
                counts[1 if whole else 2] += 1
        whole = not whole
        stop.wait(VANISH_PAUSE)


def _flood(address: str, stop: multiprocessing.synchronize.Event, counts: Any) -> None:
    """Garbage as fast as one thread can: fresh connections carrying junk frames or junk bytes."""
    target = parse_address(address)
    junk = random.Random(8)  # noise, not secrets
    while not stop.is_set():
        body = junk.randbytes(junk.randrange(1, 600))
        data = encode_frame(body) if junk.random() < 0.5 else body
        try:
            with connect(target, timeout=5) as sock:
                sock.sendall(data)
                sock.settimeout(1.0)
                with contextlib.suppress(OSError):
                    while sock.recv(65536):  # the error answer, then the close
                        pass
        except (WireError, OSError):
            continue
        with counts.get_lock():
            counts[3] += 1


def _attack_main(address: str, *, stop: multiprocessing.synchronize.Event,
                 started: multiprocessing.synchronize.Event, counts: Any, document: bytes,
                 shape: tuple[int, int, int]) -> None:
    stalled, vanishing, flooders = shape
    threads = [threading.Thread(target=_stall, args=(address, stop, counts), daemon=True) for _ in range(stalled)]
    threads += [threading.Thread(target=_vanish, args=(address, stop, counts, document), daemon=True)
                for _ in range(vanishing)]
    threads += [threading.Thread(target=_flood, args=(address, stop, counts), daemon=True) for _ in range(flooders)]
    for thread in threads:
        thread.start()
    # Started once every stalled client has its half frame in, and some of the rest have begun.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not stop.is_set():
        if counts[0] >= stalled and counts[1] + counts[2] >= vanishing and counts[3] >= flooders:
            break
        time.sleep(0.02)
    started.set()
    stop.wait(600)
    for thread in threads:
        thread.join(5)


@dataclass
class AttackCounts:
    stalled: int = 0
    vanished_mid_call: int = 0
    vanished_mid_frame: int = 0
    garbage: int = 0

    def line(self) -> str:
        return (f"hostile connections: {self.stalled} stalled (half a frame, then silence), "
                f"{self.vanished_mid_call} vanished mid-call, {self.vanished_mid_frame} vanished mid-frame, "
                f"{self.garbage} garbage")


@contextlib.contextmanager
def attack(address: str, document: bytes, *, stalled: int = STALLED, vanishing: int = VANISHING,
           flooders: int = FLOODERS) -> Iterator[AttackCounts]:
    """Hostile peers on ``address`` from another process while the block runs; counts filled in at the end."""
    context = multiprocessing.get_context("spawn")
    stop, started = context.Event(), context.Event()
    counts = context.Array("q", 4)
    options = {"stop": stop, "started": started, "counts": counts, "document": document,
               "shape": (stalled, vanishing, flooders)}
    process = context.Process(target=_attack_main, name="nitrokit-attack", daemon=True, args=(address,),
                              kwargs=options)
    process.start()
    result = AttackCounts()
    try:
        if not started.wait(60):
            raise RuntimeError("the attacking process did not start")
        yield result
    finally:
        stop.set()
        process.join(15)
        if process.is_alive():
            process.kill()
            process.join()
        result.stalled, result.vanished_mid_call, result.vanished_mid_frame, result.garbage = counts[:]


@dataclass
class AttackResult:
    baseline: CallRecord
    under_attack: CallRecord
    counts: AttackCounts
    #: KMS calls made during the attack: the honest ones, and one for each peer that vanished mid-call
    kms_calls: int = 0

    @property
    def bound_ms(self) -> float:
        """The stated bound on honest p99 under attack: max(5 x baseline p99, baseline p99 + 2 s)."""
        return max(5 * self.baseline.p99_ms, self.baseline.p99_ms + 2000)

    def lines(self) -> list[str]:
        b, a = self.baseline, self.under_attack
        return [
            f"honest clients alone:      {len(b.latencies)} calls, {b.calls_per_second:,.0f} calls/s, "
            f"p50 {b.p50_ms:.0f} ms, p99 {b.p99_ms:.0f} ms, failures {len(b.failures)}",
            f"honest clients, attacked:  {len(a.latencies)} calls, {a.calls_per_second:,.0f} calls/s, "
            f"p50 {a.p50_ms:.0f} ms, p99 {a.p99_ms:.0f} ms, failures {len(a.failures)} "
            f"(bound on p99: {self.bound_ms:.0f} ms)",
            "  " + self.counts.line(),
            f"  KMS calls during the attack: {self.kms_calls} ({len(a.latencies)} honest; the parent relays a "
            "whole request even when its sender has gone)",
        ]


def run_attack(rig: Rig, identities: Sequence[Identity], *, clients: int, calls: int) -> AttackResult:
    """Honest clients alone, then the same honest clients while hostile peers run."""
    baseline = drive(rig.address, identities, clients=clients, calls=calls)
    before = rig.kms.outcomes().get("ok", 0)
    with attack(rig.address, identities[-1].document) as counts:
        under_attack = drive(rig.address, identities, clients=clients, calls=calls)
    settle(rig.kms)
    return AttackResult(baseline, under_attack, counts, kms_calls=rig.kms.outcomes().get("ok", 0) - before)


def settle(kms: SimulatedKms, *, quiet: float = 0.5, limit: float = 15.0) -> None:
    """Wait until KMS has had no call for ``quiet`` seconds (the parent may still be relaying the calls of
    peers that vanished), at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    last = kms.outcomes()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = kms.outcomes()
        if now == last:
            return
        last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--calls", type=int, default=CALLS, help="calls per connection")
    parser.add_argument("--honest-clients", type=int, default=16)
    parser.add_argument("--honest-calls", type=int, default=25, help="calls per honest client, per phase")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores (the simulated KMS, the parent and every client share them); "
          f"Python {sys.version.split()[0]}")
    identities = make_identities(max(1, -(-args.connections // CONNECTIONS_PER_IDENTITY)))
    with Rig() as rig:
        load = run_load(rig, identities, connections=args.connections, calls=args.calls)
        print("\n".join(load.lines()))
        outcomes = rig.kms.outcomes()
        print(f"  simulated KMS outcomes: {outcomes}")
        result = run_attack(rig, identities, clients=args.honest_clients, calls=args.honest_calls)
        print("\n".join(result.lines()))
        print(f"  parent RSS after all: {rss_kib(rig.pid) / 1024:.1f} MiB; peak {peak_rss_kib(rig.pid) / 1024:.1f} MiB")
    print(f"parent exit code after SIGTERM: {rig.parent_exit}")
    failures = load.record.failures + result.baseline.failures + result.under_attack.failures
    for failure in sorted(set(failures))[:10]:
        print(f"  failure: {failure}")
    if failures or load.distinct != load.expected:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
