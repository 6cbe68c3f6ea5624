"""Errors of the simulated KMS.

Two kinds, both :class:`~nitrokit.errors.NitrokitError`:

- :class:`KmsConfigError` (a :class:`~nitrokit.errors.UsageError`): the simulator's configuration is invalid
  (unknown key, bad value, a policy statement it cannot evaluate). Raised when the config is built or
  loaded, never while serving, so a typo can not silently turn a check off.
- :class:`KmsServiceError`: one AWS error answer (``__type``, HTTP status, message). The server raises it
  while handling a request and turns it into the JSON error body; it never escapes to a caller of the
  Python API. Messages never contain plaintext, secret keys or signatures.
"""

from __future__ import annotations

from nitrokit.errors import NitrokitError, UsageError

__all__ = ["KmsConfigError", "KmsServiceError", "KmsSimError"]


class KmsSimError(NitrokitError):
    """Base class of every error the simulated KMS raises on purpose."""


class KmsConfigError(KmsSimError, UsageError):
    """The simulator's configuration (file, mapping, policy statement or option) is invalid."""


class KmsServiceError(KmsSimError):
    """An error answer as AWS KMS gives it: ``{"__type": code, "message": message}`` with ``status``.

    ``reason`` is an optional detail for the server's log line only (for example which attestation
    condition failed); it is not sent to the client, as the real service does not say.
    """

    def __init__(self, code: str, message: str, *, status: int = 400, reason: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status
        self.reason = reason
