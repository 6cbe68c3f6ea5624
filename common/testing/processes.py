"""Run ``nitrokit`` commands as child processes that print their address first (kms-sim, parent, serve).

    with NitrokitProcess("parent", "--listen", "unix:///tmp/p.sock", env=env) as parent:
        parent.first_line        # the address it listens on
    # stopped with SIGTERM on exit (SIGKILL if it does not stop within the grace time)

:func:`simulator_environment` is the environment for a parent that talks to a :class:`~nitrokit.kms.SimulatedKms`.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Self

from nitrokit.errors import NitrokitError

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class ProcessStartError(NitrokitError):
    """A child process exited or stayed silent instead of printing its address."""


class NitrokitProcess:
    """A ``python -m nitrokit ARGS`` child whose first stdout line (first ``lines`` lines) is read on start.

    ``nitrokit parent --mode tunnel`` prints two addresses, the tunnel's and the credentials channel's: pass
    ``lines=2`` and read :attr:`lines`.
    """

    def __init__(self, *args: str, env: Mapping[str, str] | None = None,
                 start_timeout: float = START_TIMEOUT, lines: int = 1) -> None:
        self._args = args
        self._env = dict(os.environ if env is None else env)
        self._start_timeout = start_timeout
        self._wanted = lines
        self._stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115  # closed in stop()
        self.process: subprocess.Popen[str] | None = None
        self.first_line = ""
        #: the first ``lines`` lines of standard output, stripped
        self.lines: list[str] = []

    def start(self) -> str:
        self.process = subprocess.Popen(  # noqa: S603  # our own interpreter and module, arguments as a list
            [sys.executable, "-m", "nitrokit", *self._args], env=self._env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        lines: queue.Queue[str] = queue.Queue()
        stdout = self.process.stdout
        assert stdout is not None
        wanted = self._wanted

        def read_lines() -> None:
            for _ in range(wanted):
                lines.put(stdout.readline())

        threading.Thread(target=read_lines, daemon=True).start()
        deadline = time.monotonic() + self._start_timeout
        for _ in range(wanted):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise ProcessStartError(f"nitrokit {self._args[0]} printed nothing within {self._start_timeout:g} s: "
                                        f"{self.stderr_text()}") from None
            if not line:
                self.stop()
                raise ProcessStartError(f"nitrokit {self._args[0]} exited before listening: {self.stderr_text()}")
            self.lines.append(line.strip())
        self.first_line = self.lines[0]
        return self.first_line

    def stop(self, *, signum: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int | None:
        """Send ``signum``, wait up to ``timeout`` (then kill); return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def stderr_text(self, limit: int = 4000) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read()[-limit:].strip()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self._stderr.close()


def simulator_environment() -> dict[str, str]:
    """An environment for a ``nitrokit parent`` child that talks to a :class:`~nitrokit.kms.SimulatedKms`.

    The simulator's default credentials, and no real AWS configuration, profile or metadata service, so the
    child can never reach real AWS with someone's credentials.
    """
    from nitrokit.kms import DEFAULT_ACCESS_KEY

    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY.access_key_id,
        "AWS_SECRET_ACCESS_KEY": DEFAULT_ACCESS_KEY.secret_access_key,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    })
    return env
