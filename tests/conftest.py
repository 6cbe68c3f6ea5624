"""Shared test helpers: where the real AWS samples live, and skipping cleanly when they do not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"
VECTORS = Path(os.environ.get("NITROKIT_VECTORS", REPO.parent / "shared" / "vectors"))

_MISSING = (
    f"real AWS samples not found at {VECTORS} (they live in ../shared/vectors beside the checkout; "
    "set NITROKIT_VECTORS to point elsewhere). CI never skips these."
)


def vector_files(subdir: str, pattern: str) -> list[object]:
    """Parameters for each sample file in ``VECTORS/subdir`` matching ``pattern``, or one skipping param."""
    folder = VECTORS / subdir
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=_MISSING), id="vectors-missing")]
    return [pytest.param(path, id=path.name, marks=pytest.mark.vectors) for path in files]


def vector_path(subdir: str, name: str) -> Path:
    """The path of one sample file, skipping the calling test when the samples are absent."""
    path = VECTORS / subdir / name
    if not path.is_file():
        pytest.skip(_MISSING)
    return path
