"""ruff and mypy run as part of the suite, so the README's one test command checks everything."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)


def test_ruff_is_clean() -> None:
    if shutil.which("ruff") is None and _run("ruff", "--version").returncode != 0:
        pytest.fail("ruff is not installed: install the test extra (pip install -e '.[test]')")
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    # nitrokit is checked as installed (common/ as nitrokit, ...): tests/typecheck.py lays that out for mypy.
    from tests.typecheck import run_mypy

    result = run_mypy()
    assert result.returncode == 0, result.stdout + result.stderr
