"""Keep freed CPU memory in the process instead of handing it back to the OS after every step.

glibc's ``malloc`` serves blocks above its mmap threshold (at most 32 MiB by default) with fresh
``mmap`` pages and unmaps them on ``free``. A training step on a CPU allocates and frees many
parameter-sized tensors (gradients, a penalty's perturbed parameters, the tied embedding's
gradient), so every step pays the kernel to zero-fill the same pages again: on the 135M model a
fresh 113 MiB gradient costs 2× a reused one (measured in benchmarks/RESULTS.md, "Allocator").
`keep_freed_memory` raises glibc's mmap and trim thresholds so that such blocks come from the
heap and stay there for the next step — what jemalloc / tcmalloc (``LD_PRELOAD``), which
PyTorch's CPU performance guide recommends, do by design.

The cost is resident memory: freed blocks are kept (up to the peak the process reached), not
returned — the main job (``make run``) peaked at 4.97 GB resident with it against 4.5 GB
without (an earlier run), in 13 min 27 s against 14 min 14 s (one run each, same results; its
budget is 8 GiB).
Every ``losscraft`` command applies it (``losscraft bench``'s step figures are taken with it);
``LOSSCRAFT_KEEP_FREED_MEMORY=0`` turns it off, ``=1`` forces it on for code that calls
``keep_freed_memory(default=False)``. Not glibc (macOS, musl, Windows): nothing happens.

`rss_follows_tensors` does the opposite for a measurement: every block of 128 KiB or more gets
pages of its own and gives them back on ``free``, so the peak resident set is the peak of live
tensors (plus small change), not of live tensors plus heap holes left by earlier sizes — glibc's
default *dynamic* threshold moves blocks of up to 32 MiB onto the heap after the first free, and
the holes they leave inflated a step's measured peak by up to 40 % (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks below this are served from the heap (larger ones, e.g. whole checkpoints, still mmap).
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap is returned to the OS only above this.
TRIM_THRESHOLD = (1 << 31) - 1

#: glibc's own default mmap threshold (before its dynamic adjustment).
DEFAULT_MMAP_THRESHOLD = 128 * 1024

_applied: bool | None = None


def _mallopt():
    """glibc's ``mallopt``, or ``None`` where there is none (or the switch is off)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        return None


def keep_freed_memory(default: bool = True) -> bool:
    """Tune glibc malloc as described above, once per process; ``True`` if it took effect.

    Args:
        default: whether to apply it when ``LOSSCRAFT_KEEP_FREED_MEMORY`` is unset (``1`` /
            ``0`` in the environment always win). A call that does not apply it decides
            nothing: a later call may still apply it."""
    global _applied
    if _applied:
        return True
    switch = os.environ.get("LOSSCRAFT_KEEP_FREED_MEMORY", "")
    if switch == "0" or (switch != "1" and not default):
        return False
    _applied = False
    mallopt = _mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; a libc without these parameters (not glibc) returns 0.
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied


@contextmanager
def rss_follows_tensors() -> Iterator[bool]:
    """Inside: blocks ≥ 128 KiB are mmapped and unmapped on free (fixed threshold), so the
    process's resident set tracks live tensors; afterwards `keep_freed_memory`'s setting (if it
    was applied) or glibc's default threshold is restored. Yields whether it took effect."""
    mallopt = _mallopt()
    ok = mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD))
    try:
        yield ok
    finally:
        if ok:
            mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD if _applied else DEFAULT_MMAP_THRESHOLD)
