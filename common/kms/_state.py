"""The simulated KMS's keys persisted to a directory (``--state-dir``), so they outlive one run.

One file, ``DIR/kms-sim-state.json``: every key (id, spec, usage, description, creation date, state, deletion
date, policy text, and its material: 32 bytes in hex for a symmetric key, PKCS#8 PEM for an ECC key) and every
alias. It is written after each call that changes a key or an alias, whole, to a temporary file in the same
directory and renamed over the old one, so a crash leaves the old state or the new, never half of one. The
directory is created 0700 and the file 0600: it holds key material in the clear (test keys only, like the
fixture PKI). Reading it is bounded (:data:`MAX_STATE_BYTES`) and strict (:mod:`nitrokit.strict_json`); a file
the simulator did not write is a :class:`~nitrokit.kms.errors.KmsConfigError` at start, never a crash later.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from nitrokit import strict_json
from nitrokit.kms.errors import KmsConfigError

__all__ = ["MAX_STATE_BYTES", "STATE_FILE", "StateDir"]

STATE_FILE = "kms-sim-state.json"
#: 10000 keys with policies fit; a larger file is refused unread
MAX_STATE_BYTES = 256 * 1024 * 1024
FORMAT = "nitrokit-kms-sim-state/1"


class StateDir:
    """Where one simulator keeps its keys."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KmsConfigError(f"state_dir {self.path}: cannot create it: {exc.strerror}") from None
        if not self.path.is_dir():
            raise KmsConfigError(f"state_dir {self.path} is not a directory")
        self.file = self.path / STATE_FILE

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None if there is none yet."""
        try:
            with self.file.open("rb") as handle:
                raw = handle.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KmsConfigError(f"state_dir: cannot read {self.file}: {exc.strerror}") from None
        if len(raw) > MAX_STATE_BYTES:
            raise KmsConfigError(f"state_dir: {self.file} is larger than {MAX_STATE_BYTES} bytes")
        try:
            data = strict_json.loads(raw, what=str(self.file), max_bytes=MAX_STATE_BYTES)
        except strict_json.StrictJsonError as exc:
            raise KmsConfigError(f"state_dir: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise KmsConfigError(f"state_dir: {self.file} is not a state file this simulator wrote "
                                 f"(format {FORMAT})")
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Replace the saved state with ``data`` (atomically)."""
        text = json.dumps({"format": FORMAT, **data}, separators=(",", ":"))
        descriptor, temporary = tempfile.mkstemp(prefix=".kms-sim-state-", dir=self.path)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
