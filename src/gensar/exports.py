"""Lazy public names: a subpackage's ``__init__`` declares what a library user may import from it,
and each name is imported from its defining module on first use.

So ``from gensar.serve import Service`` imports ``gensar.serve.service`` and what it needs, and
importing ``gensar`` or a subpackage alone imports nothing heavy (no torch, no pandas), which
keeps ``gensar --help`` and every command's start fast. A name that is also a submodule's name
(``gensar.data.prepare``, ``gensar.model.train``) is not exported: after the submodule is imported
the package attribute would be the module, so the import would mean two things.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence


def lazy_exports(
    package: str, names: Sequence[str], by_module: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``, whose ``__all__`` is ``names``; ``by_module``
    maps each defining module (absolute, inside ``package``) to the public names it defines."""
    where = {name: module for module, found in by_module.items() for name in found}
    if sorted(where) != sorted(names) or any(not m.startswith(package + ".") for m in by_module):
        raise ImportError(f"{package}: __all__ and the modules of its names disagree")  # a bug here, not input

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # the next lookup finds it without this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
