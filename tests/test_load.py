"""The parent under load: 200 enclave connections at once, and honest clients beside hostile peers.

The rig and the clients are bench/load.py's (read its docstring for what runs where): the simulated KMS in
this process, the parent as a real ``nitrokit parent`` child on a Unix socket, one thread and connection per
enclave, a few shared pre-made identities (key generation is not what is under test), no retries.

Size: 200 connections x 50 calls (10,000 calls; about 30 s alone on 2 cores). ``NITROKIT_LOAD_SCALE``
multiplies the calls per connection (0.2: 10 calls each, for a slow machine; 2: 100 each); the connections
stay 200. ``python bench/load.py`` runs the full size outside pytest and prints the same figures.

Asserted: every call answered, with the asked length, all values distinct, no failure, KMS answered each
call exactly once, all 200 connections open at once, the parent's RSS growth under :data:`RSS_GROWTH_BOUND_MIB`;
under attack, honest p99 below max(5 x baseline p99, baseline p99 + 2 s) and no honest call failing.
Latencies are printed (``pytest -s`` or ``-rP``), not asserted, except for that generous bound.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.load import (
    CALLS,
    CONNECTIONS,
    CONNECTIONS_PER_IDENTITY,
    FLOODERS,
    STALLED,
    Identity,
    Rig,
    make_identities,
    peak_rss_kib,
    rss_kib,
    run_attack,
    run_load,
)

SCALE = float(os.environ.get("NITROKIT_LOAD_SCALE", "1"))
CALLS_PER_CONNECTION = max(1, round(CALLS * SCALE))
#: The parent's resident memory may grow this much over the load. Observed: about 8 MiB (buffers of 200
#: connections, allocator high-water). A leak of each call's request (a ~6 KB frame) would be ~60 MiB.
RSS_GROWTH_BOUND_MIB = 32
HONEST_CLIENTS = 16
HONEST_CALLS = 25


@pytest.fixture(scope="module")
def identities() -> list[Identity]:
    return make_identities(-(-CONNECTIONS // CONNECTIONS_PER_IDENTITY))


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with Rig() as running:
        yield running
    assert running.parent_exit == 0, running.parent_log()


def test_many_connections_many_calls_nothing_lost_or_duplicated(rig: Rig, identities: list[Identity]) -> None:
    kms_before = rig.kms.outcomes().get("ok", 0)
    result = run_load(rig, identities, connections=CONNECTIONS, calls=CALLS_PER_CONNECTION)
    print("\n".join(result.lines()))
    record = result.record
    assert not record.failures, sorted(set(record.failures))[:5]
    assert len(record.values) == result.expected
    assert all(len(value) == 32 for value in record.values)
    assert result.distinct == result.expected, "a value came back twice"
    # Each call reached KMS exactly once (3 warm-up calls before the load).
    assert rig.kms.outcomes() == {"ok": kms_before + 3 + result.expected}
    assert result.peak_fds >= CONNECTIONS, "the connections were not all open at once"
    growth_mib = (result.rss_after_kib - result.rss_before_kib) / 1024
    assert growth_mib < RSS_GROWTH_BOUND_MIB, f"the parent's RSS grew by {growth_mib:.1f} MiB"


def test_hostile_peers_do_not_slow_honest_clients_beyond_the_bound(rig: Rig, identities: list[Identity]) -> None:
    result = run_attack(rig, identities, clients=HONEST_CLIENTS, calls=HONEST_CALLS)
    print("\n".join(result.lines()))
    print(f"parent RSS now {rss_kib(rig.pid) / 1024:.1f} MiB, peak {peak_rss_kib(rig.pid) / 1024:.1f} MiB")
    for record in (result.baseline, result.under_attack):
        assert not record.failures, sorted(set(record.failures))[:5]
        assert len(record.values) == HONEST_CLIENTS * HONEST_CALLS
    values = result.baseline.values + result.under_attack.values
    assert len(set(values)) == len(values)
    counts = result.counts
    assert counts.stalled >= STALLED and counts.vanished_mid_call > 0 and counts.vanished_mid_frame > 0
    assert counts.garbage >= FLOODERS
    assert result.under_attack.p99_ms < result.bound_ms, (
        f"honest p99 under attack {result.under_attack.p99_ms:.0f} ms, bound {result.bound_ms:.0f} ms")
