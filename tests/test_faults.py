"""Faults on the GenerateRandom path: the enclave client gets its bytes or a typed error, never wrong bytes or a hang.

Real parts throughout: the simulated KMS (in this process, so its faults can be switched at run time), the
parent as a ``nitrokit parent`` child process on a Unix socket, and enclaves as :class:`KmsClient` threads,
each with its own simulated NSM and identity. The faults: KMS answering 500s, KMS too slow (past the
parent's ``--kms-read-timeout``), KMS refusing connections, KMS going away mid-run (and coming back), and the
parent killed or stopped and restarted on the same socket path while calls are in flight.

Every call runs under a ``concurrent.futures`` timeout computed from the client's own limits (a call that
outlives it is a hang and fails the test); every value must have the asked length and all values must be
distinct; every failure must be a ``KmsCallError`` (an honest parent never causes ``UntrustedAnswerError``).
"""

from __future__ import annotations

import signal
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import pytest

from nitrokit.enclave.errors import KmsCallError
from nitrokit.enclave.kms_client import KmsClient, RetryPolicy
from nitrokit.enclave.nsm import SimulatedNsm
from nitrokit.kms import Faults, SimulatedKms
from nitrokit.testing.processes import NitrokitProcess, simulator_environment
from nitrokit.wire.errors import ErrorCode

SIZES = (16, 24, 32, 48)  # varied, so a value of the wrong length shows
CONNECT_TIMEOUT = 1.0
CLIENT_TIMEOUT = 8.0
# The parent's KMS limits in these tests: one call's worst case is 2 x (1 + 2) s plus botocore's backoff,
# well inside the client's timeout.
PARENT_KMS_LIMITS = ("--kms-connect-timeout", "1", "--kms-read-timeout", "2", "--kms-max-attempts", "2")


def call_bound(retry: RetryPolicy) -> float:
    """The longest one ``generate_random`` may take: every attempt connecting, sending and waiting in full,
    every backoff at its longest, and a key generation. Past it, a call is hung."""
    attempt = CONNECT_TIMEOUT + 2 * CLIENT_TIMEOUT
    return retry.max_attempts * attempt + (retry.max_attempts - 1) * retry.max_delay + 5.0


@dataclass
class Outcome:
    asked: int
    value: bytes | None
    error: BaseException | None
    seconds: float
    finished: float  # time.monotonic() at the end


def run_enclaves(parent: str, *, enclaves: int, calls: int, retry: RetryPolicy,
                 during: Callable[[], None] | None = None, pause: float = 0.0,
                 retried: list[str] | None = None) -> list[Outcome]:
    """``enclaves`` threads, each a KmsClient making ``calls`` calls; ``during()`` runs meanwhile.

    Each call is submitted to the enclave's own one-thread executor and waited for with :func:`call_bound`: a
    call still running after that fails the test as a hang. ``retried`` collects the client's retry notes.
    """
    bound = call_bound(retry)
    outcomes: list[list[Outcome]] = [[] for _ in range(enclaves)]
    hangs: list[str] = []
    notes = retried if retried is not None else []

    def trace(message: str) -> None:
        if message.startswith("retryable failure"):
            notes.append(message)

    def enclave(index: int) -> None:
        caller = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"enclave-{index}")
        client = KmsClient(nsm=SimulatedNsm(), parent=parent, retry=retry, connect_timeout=CONNECT_TIMEOUT,
                           timeout=CLIENT_TIMEOUT, trace=trace)
        try:
            for number in range(calls):
                asked = SIZES[(index + number) % len(SIZES)]
                started = time.monotonic()
                future: Future[bytes] = caller.submit(client.generate_random, asked)
                try:
                    value, error = future.result(timeout=bound), None
                except FutureTimeout:
                    hangs.append(f"enclave {index} call {number} still running after {bound:.0f} s")
                    return
                except Exception as exc:
                    value, error = None, exc
                finished = time.monotonic()
                outcomes[index].append(Outcome(asked, value, error, finished - started, finished))
                if pause:
                    time.sleep(pause)
        finally:
            client.close()
            caller.shutdown(wait=False)

    with ThreadPoolExecutor(max_workers=enclaves) as pool:
        futures = [pool.submit(enclave, index) for index in range(enclaves)]
        if during is not None:
            during()
        for future in futures:
            future.result(timeout=calls * bound + 30)
    assert not hangs, hangs
    return [outcome for per_enclave in outcomes for outcome in per_enclave]


def check(outcomes: list[Outcome], *, expected: int) -> tuple[list[Outcome], list[KmsCallError]]:
    """Every call answered with the right number of fresh bytes or a KmsCallError; return both kinds.

    Prints a summary (``pytest -s`` or ``-rP`` shows it; docs/performance.md records it)."""
    codes: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.error is not None:
            name = getattr(outcome.error, "code", type(outcome.error).__name__)
            codes[name] = codes.get(name, 0) + 1
    slowest = max((outcome.seconds for outcome in outcomes), default=0.0)
    print(f"{len(outcomes)} calls: {len(outcomes) - sum(codes.values())} with bytes, errors {codes or 'none'}; "
          f"slowest call {slowest:.2f} s")
    assert len(outcomes) == expected
    good = [outcome for outcome in outcomes if outcome.error is None]
    errors = [outcome.error for outcome in outcomes if outcome.error is not None]
    unexpected = [error for error in errors if not isinstance(error, KmsCallError)]
    assert not unexpected, [f"{type(error).__name__}: {error}" for error in unexpected]
    for outcome in good:
        assert outcome.value is not None and len(outcome.value) == outcome.asked
    values = [outcome.value for outcome in good]
    assert len(set(values)) == len(values), "a value came back twice"
    return good, [error for error in errors if isinstance(error, KmsCallError)]


@pytest.fixture
def kms() -> Iterator[SimulatedKms]:
    with SimulatedKms() as simulator:
        yield simulator


class Parent:
    """A ``nitrokit parent`` child on a fixed Unix socket path that can be killed and started again."""

    def __init__(self, socket_path: Path, kms_url: str, *extra: str) -> None:
        self.listen = f"unix://{socket_path}"
        self._args = ("parent", "--listen", self.listen, "--endpoint-url", kms_url, "--region", "us-east-1",
                      *extra)
        self.process = self._start()
        self.exit_codes: list[int | None] = []

    def _start(self) -> NitrokitProcess:
        process = NitrokitProcess(*self._args, env=simulator_environment())
        process.start()
        return process

    def restart(self, *, signum: int) -> None:
        """Stop with ``signum`` (SIGKILL: no chance to finish anything) and start afresh on the same path."""
        self.exit_codes.append(self.process.stop(signum=signum, timeout=10))
        self.process = self._start()

    def close(self) -> int | None:
        return self.process.stop()


@pytest.fixture
def start_parent(tmp_path: Path) -> Iterator[Callable[..., Parent]]:
    started: list[Parent] = []

    def start(kms_url: str, *extra: str) -> Parent:
        parent = Parent(tmp_path / "parent.sock", kms_url, *extra)
        started.append(parent)
        return parent

    yield start
    for parent in started:
        assert parent.close() == 0, parent.process.stderr_text()


# -- KMS answering 500s --------------------------------------------------------------------------------------------


def test_a_burst_of_500s_is_retried_to_the_bytes(kms: SimulatedKms, start_parent: Callable[..., Parent]) -> None:
    # The parent's botocore makes 3 attempts per relayed call; 5 failures take 2 enclave attempts.
    parent = start_parent(kms.url, "--kms-max-attempts", "3")
    kms.fail_next(5, error="KMSInternalException")
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
    good, errors = check(run_enclaves(parent.listen, enclaves=1, calls=1, retry=retry), expected=1)
    assert len(good) == 1 and not errors
    assert kms.outcomes() == {"KMSInternalException": 5, "ok": 1}


def test_frequent_500s_give_bytes_or_a_typed_error(kms: SimulatedKms, start_parent: Callable[..., Parent]) -> None:
    parent = start_parent(kms.url, *PARENT_KMS_LIMITS)
    kms.set_faults(Faults(internal_error_rate=0.45, dependency_timeout_rate=0.3, seed=6))
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05)
    good, errors = check(run_enclaves(parent.listen, enclaves=8, calls=12, retry=retry), expected=96)
    # 75% of KMS calls fail, the parent tries twice and the client twice: about 70% of calls still succeed.
    assert len(good) >= 30, f"only {len(good)} of 96 calls succeeded"
    assert errors, "no call failed; the faults were not injected"
    for error in errors:
        assert error.code in {"KMSInternalException", "DependencyTimeoutException"}, error
        assert error.retryable and error.attempts == 2
    outcomes = kms.outcomes()
    assert outcomes["KMSInternalException"] > 0 and outcomes["DependencyTimeoutException"] > 0
    assert outcomes["ok"] == len(good)  # every KMS success reached its enclave, once


# -- KMS timing out ------------------------------------------------------------------------------------------------


def test_kms_slower_than_the_read_timeout_gives_a_typed_error_then_bytes_once_it_recovers(
        kms: SimulatedKms, start_parent: Callable[..., Parent]) -> None:
    parent = start_parent(kms.url, "--kms-read-timeout", "0.5", "--kms-max-attempts", "1")
    kms.set_faults(Faults(latency_ms=1500))
    retry = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05)
    started = time.monotonic()
    good, errors = check(run_enclaves(parent.listen, enclaves=4, calls=1, retry=retry), expected=4)
    assert not good and len(errors) == 4
    for error in errors:
        assert error.code == ErrorCode.KMS_TIMEOUT and error.retryable and error.attempts == 2
    assert time.monotonic() - started < 10  # 2 attempts of 0.5 s each, not the KMS's 1.5 s, nor a hang

    # Recovering while calls are being made: the timeouts turn into bytes.
    def recover() -> None:
        time.sleep(1.0)
        kms.set_faults(Faults())

    retry = RetryPolicy(max_attempts=4, base_delay=0.2, max_delay=0.5)
    outcomes = run_enclaves(parent.listen, enclaves=4, calls=6, retry=retry, during=recover)
    good, errors = check(outcomes, expected=24)
    assert all(error.code == ErrorCode.KMS_TIMEOUT for error in errors), errors
    assert len(good) >= 16  # at least the calls after the recovery


def test_kms_latency_under_the_read_timeout_is_only_slower(kms: SimulatedKms,
                                                          start_parent: Callable[..., Parent]) -> None:
    parent = start_parent(kms.url, "--kms-read-timeout", "2", "--kms-max-attempts", "1")
    kms.set_faults(Faults(latency_ms=300))
    outcomes = run_enclaves(parent.listen, enclaves=4, calls=3, retry=RetryPolicy(max_attempts=1))
    good, errors = check(outcomes, expected=12)
    assert len(good) == 12 and not errors
    assert all(outcome.seconds >= 0.3 for outcome in good)


# -- KMS refusing connections, or going away -----------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connecting is refused


def test_kms_refusing_connections_is_a_typed_retryable_error(start_parent: Callable[..., Parent]) -> None:
    parent = start_parent(f"http://127.0.0.1:{_closed_port()}", *PARENT_KMS_LIMITS)
    retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
    started = time.monotonic()
    good, errors = check(run_enclaves(parent.listen, enclaves=4, calls=2, retry=retry), expected=8)
    assert not good
    for error in errors:
        assert error.code == ErrorCode.KMS_UNAVAILABLE and error.retryable and error.attempts == 3
    assert time.monotonic() - started < 20


def test_a_client_resetting_its_connection_is_no_traceback_in_the_simulator(
        kms: SimulatedKms, capfd: pytest.CaptureFixture[str]) -> None:
    # What the simulator sees when a parent is killed between keep-alive requests: a reset while it waits
    # for the next request line.
    for _ in range(3):
        with socket.create_connection(kms.address, timeout=5) as sock:
            time.sleep(0.1)  # the server's thread is now reading the request line
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
    time.sleep(0.3)
    assert len(kms.client().generate_random(NumberOfBytes=8)["Plaintext"]) == 8
    assert "Traceback" not in capfd.readouterr().err


def test_kms_going_away_mid_run_and_coming_back(start_parent: Callable[..., Parent]) -> None:
    kms = SimulatedKms().start()
    host, port = kms.address
    parent = start_parent(kms.url, *PARENT_KMS_LIMITS)
    stopped_at: list[float] = []
    back_at: list[float] = []
    replacement: list[SimulatedKms] = []

    def go_away_and_come_back() -> None:
        time.sleep(0.8)
        kms.stop()  # open connections are shut down: calls in flight fail
        stopped_at.append(time.monotonic())
        time.sleep(1.5)
        replacement.append(SimulatedKms(host=host, port=port).start())
        back_at.append(time.monotonic())

    retry = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=0.3)
    try:
        outcomes = run_enclaves(parent.listen, enclaves=6, calls=40, retry=retry, during=go_away_and_come_back,
                                pause=0.02)
    finally:
        kms.stop()
        for simulator in replacement:
            simulator.stop()
    good, errors = check(outcomes, expected=240)
    for error in errors:
        assert error.code in {ErrorCode.KMS_UNAVAILABLE, ErrorCode.KMS_TIMEOUT} and error.retryable, error
    assert any(outcome.finished < stopped_at[0] for outcome in good), "no call succeeded before KMS went away"
    assert any(outcome.finished > back_at[0] for outcome in good), "no call succeeded after KMS came back"
    assert errors, "no call noticed KMS was gone"


# -- the parent restarted while calls are in flight ----------------------------------------------------------------


def test_parent_killed_and_restarted_while_calls_are_in_flight(kms: SimulatedKms, start_parent: Callable[..., Parent],
                                                              capfd: pytest.CaptureFixture[str]) -> None:
    kms.set_faults(Faults(latency_ms=40))  # so that calls are in the parent when it goes
    parent = start_parent(kms.url, *PARENT_KMS_LIMITS, "--grace-period", "5")
    restarted_at: list[float] = []

    def restarts() -> None:
        time.sleep(0.8)
        parent.restart(signum=signal.SIGKILL)  # abrupt: calls in flight are lost with the process
        time.sleep(0.8)
        parent.restart(signum=signal.SIGTERM)  # graceful: calls in flight finish, new ones are refused
        restarted_at.append(time.monotonic())

    retry = RetryPolicy(max_attempts=8, base_delay=0.1, max_delay=1.0)
    retried: list[str] = []
    outcomes = run_enclaves(parent.listen, enclaves=8, calls=30, retry=retry, during=restarts, pause=0.01,
                            retried=retried)
    good, errors = check(outcomes, expected=240)
    print(f"retries: {len(retried)} ({sorted({note.split()[2].rstrip(';') for note in retried})})")
    assert parent.exit_codes == [-signal.SIGKILL, 0]
    assert retried, "no call noticed the parent going away"
    for error in errors:
        assert error.retryable, error  # only transport trouble and ShuttingDown, retried to the end
    assert any(outcome.finished > restarted_at[0] for outcome in good), "no call succeeded after the restarts"
    assert len(good) >= 200, f"{len(errors)} of 240 calls failed: {sorted({e.code for e in errors})}"
    # KMS answered each successful call once; a call whose answer died with the parent was made again.
    assert kms.outcomes()["ok"] >= len(good)
    # The simulated KMS saw the killed parent's keep-alive connections reset: not a traceback on stderr.
    captured = capfd.readouterr()
    print(captured.out, end="")  # the summaries, for -rP
    assert "Traceback" not in captured.err

