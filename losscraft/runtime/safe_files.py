"""Writing files that a process owns, never through a symbolic link someone put in their place.

`write_file` writes to a fresh temporary name beside the target (created with ``O_CREAT |
O_EXCL | O_NOFOLLOW``, so it can be neither an existing file nor a link), fsyncs it and renames
it over the target: whatever the target was, nothing outside is written. `open_append` opens a
log for appending with ``O_NOFOLLOW`` (a link fails instead of being followed). `refuse_link` is
the check itself: a symlink where a file of ours is expected is a one-line `RunFolderError`
naming it (a rename would replace the link harmlessly, but a user who planted it should hear
about it rather than find it gone).
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path
from typing import IO

from losscraft.errors import RunFolderError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def link_error(path: Path) -> RunFolderError:
    try:
        target = os.readlink(path)
    except OSError:
        target = "?"
    return RunFolderError(f"{path} is a symbolic link (to {target}), where losscraft expects "
                          "its own file or folder; it never writes through a link: remove the "
                          "link (or choose another run.output_dir)")


def refuse_link(path: Path) -> None:
    """`RunFolderError` naming ``path`` when it is a symbolic link."""
    if os.path.islink(path):
        raise link_error(Path(path))


def write_file(path: Path, data: bytes | str, *, mode: int = 0o644, fsync: bool = True) -> None:
    """Replace ``path`` by ``data`` (text is written as UTF-8) atomically: a fresh temporary
    file in the same folder, fsynced, renamed over ``path``. A symlink or a folder at ``path``
    is a `RunFolderError` (nothing is written)."""
    path = Path(path)
    refuse_link(path)
    if path.is_dir():
        raise RunFolderError(f"{path} is a folder, where losscraft writes a file of its own; "
                             "move it away")
    blob = data.encode("utf-8") if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        refuse_link(path)  # planted while we wrote: still never replaced silently
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def open_append(path: Path) -> IO[str]:
    """``path`` opened for appending text (created if missing), refusing a symlink or anything
    that is not a regular file."""
    path = Path(path)
    refuse_link(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | os.O_NONBLOCK,
                     0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_error(path) from None
        raise RunFolderError(f"cannot append to {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunFolderError(f"{path} is not a regular file, where losscraft appends to a log "
                             "of its own; move it away")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")


def read_text(path: Path) -> str:
    """The text of ``path`` (UTF-8), refusing to follow a symbolic link."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_error(path) from None
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise RunFolderError(f"{path} is not a regular file")
        return f.read().decode("utf-8")


def make_dir(path: Path) -> None:
    """Create folder ``path`` (and its parents) unless it exists; a symlink or a file there is a
    `RunFolderError` naming it."""
    path = Path(path)
    refuse_link(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} is a file, where losscraft needs a folder of its own")
    path.mkdir(parents=True, exist_ok=True)
