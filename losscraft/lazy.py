"""Package attributes loaded on first use (PEP 562), so that importing a package — ``from
losscraft import hookimpl`` in a plugin, the command line's ``--help`` — does not import torch or
transformers through modules it re-exports."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, where: dict[str, str]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` that import ``where[name]`` (a module path;
    a leading ``.`` is relative to ``package``) when ``name`` is first read, and keep the value
    in the package's namespace afterwards."""

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
