"""The root of nitrokit's exception tree.

Every error nitrokit raises on purpose derives from :class:`NitrokitError`, so a caller can catch one class.
Each area (attestation, CMS, wire protocol, ...) adds its own subclasses in its own ``errors`` module.
Messages name what was wrong; they never carry key material, plaintext or secrets.
"""

from __future__ import annotations


class NitrokitError(Exception):
    """Base class of every error nitrokit raises on purpose."""


class UsageError(NitrokitError, ValueError):
    """The caller passed an invalid argument or combination of options (a programming or CLI error)."""


class InputTooLargeError(NitrokitError, ValueError):
    """An input exceeded a hard size limit before it was parsed.

    ``size`` is the input's size, or None when it was read only as far as ``limit + 1`` bytes (more than
    ``limit``, exact size unknown).
    """

    def __init__(self, what: str, size: int | None, limit: int) -> None:
        # size None: the input was read only up to the limit, so its exact size is unknown.
        if size is None:
            super().__init__(f"{what} is more than {limit} bytes, over the limit")
        else:
            super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.what = what
        self.size = size
        self.limit = limit


class MissingExtraError(UsageError, ImportError):
    """A part of nitrokit needs an optional dependency that is not installed (``pip install 'nitrokit[extra]'``).

    Also an :class:`ImportError`, so ``except ImportError`` around an optional import still works.
    """

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(f"this needs {module}, which comes with nitrokit's {extra!r} extra: "
                         f"pip install 'nitrokit[{extra}]'")
        self.extra = extra
        self.module = module
