"""Run mypy (strict, as configured in pyproject.toml) over nitrokit and the repository's own code.

nitrokit installs from three folders (common/ -> nitrokit, enclave/ -> nitrokit.enclave, parent/ ->
nitrokit.parent), and mypy cannot follow setuptools' editable-install import hook nor remap folders to module
names. So this builds the installed layout as a tree of symbolic links in a temporary directory, points
MYPYPATH at it, checks that tree (as package nitrokit) plus tests/, bench/, fixtures/ and fuzz/, and prints
mypy's messages with the links' paths turned back into the repository's.

    python tests/typecheck.py            # exit status is mypy's
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Installed package -> repository folder; the order matters for mapping paths back (longest first).
LAYOUT = {"nitrokit/enclave": "enclave", "nitrokit/parent": "parent", "nitrokit": "common"}


def build_overlay(target: Path) -> None:
    """Lay out ``target/nitrokit`` as the wheel would, with links into the repository."""
    package = target / "nitrokit"
    package.mkdir()
    for entry in sorted((REPO / "common").iterdir()):
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name in ("enclave", "parent"):
        (package / name).symlink_to(REPO / name, target_is_directory=True)


def run_mypy(*extra: str) -> subprocess.CompletedProcess[str]:
    files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    with tempfile.TemporaryDirectory(prefix="nitrokit-mypy-") as scratch:
        overlay = Path(scratch).resolve()
        build_overlay(overlay)
        env = dict(os.environ, MYPYPATH=str(overlay))
        command = [sys.executable, "-m", "mypy", str(overlay / "nitrokit"), *files, *extra]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    # Any run's layout (mypy's cache can name the directory of an earlier run) maps back to the repository.
    result.stdout, result.stderr = _repository_paths(result.stdout), _repository_paths(result.stderr)
    return result


_LAYOUT_PATH = re.compile(r"/\S*?nitrokit-mypy-[^/\s]+/nitrokit/(?:(enclave|parent)/)?")


def _repository_paths(text: str) -> str:
    return _LAYOUT_PATH.sub(lambda match: f"{LAYOUT['nitrokit/' + match.group(1)] if match.group(1) else 'common'}/",
                            text)


def main() -> int:
    result = run_mypy(*sys.argv[1:])
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
