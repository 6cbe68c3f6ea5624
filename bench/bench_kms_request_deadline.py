"""The simulated KMS's whole-request deadline: what reading through it costs per call.

    python bench/bench_kms_request_deadline.py [--calls N] [--rounds R]

Every read of a request goes through a reader that sets the socket timeout to what is left of the request's
deadline (issue 12, item 16). Measured in one run, interleaved round by round: pre-signed GenerateRandom calls
(no Recipient, so the HTTP layer is as large a share of a call as it gets) over one keep-alive connection, to
the simulator as shipped and to the same simulator reading with the standard library's socket file (no
deadline: the baseline). Printed per round: the process's CPU time per call (client and server threads are
both in this process; CPU time is far less disturbed by other load on a shared machine than wall time) and
calls per second; then the ratios shipped/baseline, median and spread.
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from nitrokit.kms import DEFAULT_ACCESS_KEY, SimulatedKms
from nitrokit.kms import server as server_module

BODY = b'{"NumberOfBytes": 32}'


class _NoDeadline:
    deadline = float("inf")
    expired = False


class _BaselineHandler(server_module._Handler):
    """The handler reading through the standard library's buffered socket file: per-read timeout only."""

    rbufsize = -1

    def setup(self) -> None:
        self.timeout = self.server.socket_timeout  # type: ignore[misc]
        BaseHTTPRequestHandler.setup(self)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = _NoDeadline()  # type: ignore[assignment]


def _headers(url: str) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url + "/", data=BODY, headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "TrentService.GenerateRandom"})
    key = DEFAULT_ACCESS_KEY
    SigV4Auth(Credentials(key.access_key_id, key.secret_access_key), "kms", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def _measure(kms: SimulatedKms, calls: int) -> tuple[float, float]:
    """(CPU microseconds per call, calls per second of wall time)."""
    host, port = kms.address
    headers = _headers(kms.url)
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            connection.request("POST", "/", body=BODY, headers=headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return cpu / calls * 1e6, calls / wall
    finally:
        connection.close()


def _start(handler: Any) -> SimulatedKms:
    with mock.patch.object(server_module, "_Handler", handler):  # _Server names its handler at construction
        return SimulatedKms().start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    shipped, baseline = _start(server_module._Handler), _start(_BaselineHandler)
    try:
        _measure(shipped, 50), _measure(baseline, 50)  # warm both (imports, first-call caches)
        cpu_ratios, rate_ratios = [], []
        print(f"{'round':>5}  {'deadline reader':>24}  {'stdlib reader':>24}  CPU ratio  rate ratio")
        for index in range(args.rounds):
            first, second = (shipped, baseline) if index % 2 == 0 else (baseline, shipped)
            figures = {id(first): _measure(first, args.calls), id(second): _measure(second, args.calls)}
            (ours_cpu, ours_rate), (base_cpu, base_rate) = figures[id(shipped)], figures[id(baseline)]
            cpu_ratios.append(ours_cpu / base_cpu)
            rate_ratios.append(ours_rate / base_rate)
            print(f"{index + 1:>5}  {ours_cpu:>7,.0f} us CPU {ours_rate:>7,.0f}/s  {base_cpu:>7,.0f} us CPU "
                  f"{base_rate:>7,.0f}/s  {cpu_ratios[-1]:>9.3f}  {rate_ratios[-1]:>10.3f}")
        for name, ratios in (("CPU per call", cpu_ratios), ("calls per second", rate_ratios)):
            print(f"{name}, deadline reader / stdlib reader: median {statistics.median(ratios):.3f}, "
                  f"min {min(ratios):.3f}, max {max(ratios):.3f} over {len(ratios)} rounds of {args.calls} calls")
    finally:
        shipped.stop()
        baseline.stop()


if __name__ == "__main__":
    main()
