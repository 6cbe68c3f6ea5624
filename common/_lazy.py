"""Lazy package exports (PEP 562): ``from nitrokit.kms import SimulatedKms`` without importing it on ``import``.

A package lists ``name -> module`` and assigns the returned pair to its ``__getattr__`` and ``__dir__``; the
module is imported the first time the name is used, then the name is cached in the package. Type checkers
see the same names through an ``if TYPE_CHECKING:`` import block beside the table.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, importing ``exports[name]`` when ``name`` is first used."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__
