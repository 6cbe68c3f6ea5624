"""Run ``nitrokit`` as a user would: a real subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nitrokit.cli
from tests.conftest import REPO


def only_commands(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Build the real dispatcher from these command modules only (no other group, no registered side)."""
    monkeypatch.setattr(nitrokit.cli, "_CORE_COMMANDS", modules)
    monkeypatch.setattr(nitrokit.cli, "_registered_commands", lambda: iter(()))


def run_cli(*args: str, input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "nitrokit", *args], input=input, capture_output=True, cwd=REPO,
                          timeout=timeout, check=False)
