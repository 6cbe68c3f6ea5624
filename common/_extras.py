"""Optional dependencies: which extra brings which module, and one way to say an extra is missing.

The core install (verification, CMS, NSM codec, EIF, the enclave side) needs only cbor2, cryptography and
asn1crypto. Modules that need more import it inside :func:`extra_required`, so a missing package becomes a
:class:`~nitrokit.errors.MissingExtraError` naming the ``pip install`` that fixes it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

from nitrokit.errors import MissingExtraError

EXTRAS: dict[str, frozenset[str]] = {
    "parent": frozenset({"boto3", "botocore"}),
    "kms-sim": frozenset({"boto3", "botocore"}),
    "demo": frozenset({"boto3", "botocore"}),  # parent + kms-sim: what `nitrokit demo` runs
}


@contextmanager
def extra_required(extra: str) -> Iterator[None]:
    """Turn the import of a module of ``extra`` that is not installed into a :class:`MissingExtraError`."""
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").partition(".")[0]
        if top not in EXTRAS[extra]:
            raise  # not an optional dependency: a real bug, keep its traceback
        raise MissingExtraError(extra, top) from None


def require_extra(extra: str) -> None:
    """Raise :class:`MissingExtraError` now if a module of ``extra`` is not installed (e.g. for a child process)."""
    for module in sorted(EXTRAS[extra]):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(extra, module)
