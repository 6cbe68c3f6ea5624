"""Run ``nitrokit`` as a user would: a real subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def run_cli(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "common", *args], input=input, capture_output=True, cwd=REPO,
                          env=env, timeout=timeout, check=False)
