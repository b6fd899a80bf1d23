"""Lazy package exports: a public name is imported from its module on first access.

A package's ``__init__`` maps each public name to the module that defines it and writes
``__getattr__, __dir__ = lazy_exports(globals(), EXPORTS)``, so importing the package does
not import the modules (nor their heavy dependencies) until a name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of the package whose ``globals()`` is
    ``namespace``; ``exports`` maps each public name to its module. A name, once imported,
    is stored in ``namespace`` so later accesses skip ``__getattr__``."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
