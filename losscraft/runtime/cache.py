"""The losscraft cache folder, and folders in it made ready once, however many processes ask.

A cached folder (a converted model, a trained judge) is made under a file lock beside it, so
concurrent processes make it once; it is written into a temporary sibling and renamed into
place, so nobody ever sees half a folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def cache_root() -> Path:
    """The losscraft cache directory (``LOSSCRAFT_CACHE_DIR`` or ``~/.cache/losscraft``)."""
    return Path(os.environ.get("LOSSCRAFT_CACHE_DIR") or "~/.cache/losscraft").expanduser()


def ready_folder(target: Path, is_ready: Callable[[Path], bool], make: Callable[[Path], None],
                 *, force: bool = False) -> Path:
    """``target``, made by ``make(target)`` first unless ``is_ready(target)`` (``force``: make
    it again anyway).

    ``make`` runs under the file lock ``<target>.lock`` beside it, after checking again inside
    the lock: a process that waited for another one's work finds it done. ``make`` usually
    writes through `replace_folder`.
    """
    if not force and is_ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f"{target.name}.lock")):
        if force or not is_ready(target):
            make(target)
    return target


def replace_folder(target: Path, fill: Callable[[Path], None]) -> None:
    """Write ``target`` with ``fill(folder)`` into a temporary sibling folder, then rename that
    into place, replacing any earlier ``target`` (stale or broken). If ``fill`` raises, the
    temporary folder is removed and ``target`` is left as it was."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is readable like any other
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
