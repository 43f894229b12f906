"""``torch.compile`` for the fused heads' chunk bodies, with an eager fallback.

A fused head's chunk body (log-softmaxes, mixtures, divergences, ``∂loss/∂logits``) is a dozen
elementwise passes over ``(chunk, V)`` tensors in eager mode; compiled (Inductor's C++ backend on
CPU, Triton on CUDA) it becomes a few loops that each read the chunk once. The matmuls stay
outside, in the caller.

- **When**: `use_compiled` — unless switched off (``LOSSCRAFT_COMPILE=0`` or ``compiled=False``
  on the fused functions), when a C++ compiler is found (``$CXX``, ``g++``, ``c++`` or
  ``clang++``) or the tensors are on CUDA, and the chunk is large enough to repay the compile
  (`MIN_ELEMENTS`; ``compiled=True`` forces it at any size, e.g. in tests).
- **Cached**: one compiled wrapper per body in this process, compiled with dynamic sizes (the
  last, shorter chunk and other lengths reuse it); Inductor's on-disk cache makes a fresh
  process's compile a cache hit.
- **Fallback**: if compiling or running the compiled body raises, a warning is issued once, that
  body runs eagerly from then on, and the call is answered eagerly.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from collections.abc import Callable

import torch

#: Environment switch: ``0`` / ``false`` / ``off`` keeps every chunk body eager.
ENV = "LOSSCRAFT_COMPILE"
#: Chunks with fewer ``(row, word)`` elements than this run eagerly unless compiling is forced.
MIN_ELEMENTS = 1 << 20

_compiled: dict[str, Callable] = {}
_failed: set[str] = set()


def env_off(name: str) -> bool:
    """Whether environment switch ``name`` is set to ``0`` / ``false`` / ``off`` / ``no`` (unset:
    on). Shared by the fused heads' switches (this module's `ENV`,
    `losscraft.functional.onednn_linear.ENV`)."""
    return os.environ.get(name, "1").strip().lower() in ("0", "false", "off", "no")


def switched_off() -> bool:
    """Whether ``LOSSCRAFT_COMPILE`` turns compiling off."""
    return env_off(ENV)


@functools.lru_cache(maxsize=1)
def _have_cxx() -> bool:
    names = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    return any(n and shutil.which(n) for n in names)


def compile_available(device: torch.device | str = "cpu") -> bool:
    """Whether chunk bodies can be compiled here: not switched off, not already inside a
    compiled region, and a compiler for ``device`` (a C++ compiler for CPU)."""
    if switched_off() or torch.compiler.is_compiling():
        return False
    return torch.device(device).type == "cuda" or _have_cxx()


def check_flag(flag) -> None:
    """Raise `ValueError` unless ``flag`` is ``True``, ``False`` or ``None``."""
    if flag is not None and not isinstance(flag, bool):
        raise ValueError(f"compiled must be True, False or None, got {flag!r}")


def use_compiled(flag: bool | None, elements: int, device: torch.device | str) -> bool:
    """Whether to run a chunk body compiled: ``flag`` ``False`` never, ``True`` whenever
    `compile_available`, ``None`` when available and the chunk has ≥ `MIN_ELEMENTS` elements."""
    check_flag(flag)
    if flag is False or not compile_available(device):
        return False
    return flag is True or elements >= MIN_ELEMENTS


def run(name: str, body: Callable, *args):
    """``body(*args)`` through its cached compiled wrapper; eagerly if compiling failed."""
    if name not in _failed:
        fn = _compiled.get(name)
        if fn is None:
            fn = _compiled[name] = torch.compile(body, dynamic=True, fullgraph=True)
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back to eager
            _failed.add(name)
            warnings.warn(f"losscraft: compiling the {name} chunk body failed "
                          f"({type(exc).__name__}: {str(exc)[:200]}); running it eagerly "
                          f"(set {ENV}=0 to skip compiling)", RuntimeWarning, stacklevel=2)
    return body(*args)


def failed(name: str) -> bool:
    """Whether compiling ``name`` failed in this process (it then runs eagerly)."""
    return name in _failed
