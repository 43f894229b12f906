"""One process per run folder: an exclusive OS lock held on the run folder itself.

The lock is ``fcntl.flock`` on an open descriptor of the run folder's *directory*, which the run
cannot lose while it writes there: deleting ``.losscraft-lock`` (which only records the holder's
pid, host and start time, for the message a refused second process gets) changes nothing, and
a folder deleted or replaced under a running run is noticed — `RunLock.verify` (called before
each write the trainer makes) compares the path with the locked inode and stops the run rather
than write into a folder someone else may now hold. The lock disappears with its process, so a
killed run never blocks the next. Where ``fcntl`` does not exist, ``.losscraft-lock`` is created
exclusively instead and a lock naming a dead process on this host is treated as stale.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from losscraft.errors import RunFolderError
from losscraft.runtime.safe_files import read_text, refuse_link, write_file
from losscraft.trainer.run_folder import LOCK, pid_alive

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _describe(path: Path) -> str:
    try:
        info = json.loads(read_text(path))
        return f"pid {info.get('pid')} on host {info.get('host')} since {info.get('since')}"
    except (OSError, ValueError, RunFolderError, AttributeError, RecursionError):
        return "another process"


class RunLock:
    """Context manager holding the run lock of folder ``out`` (created if needed)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def _busy(self) -> RunFolderError:
        return RunFolderError(
            f"run folder {self.out} is in use by {_describe(self.path)}; wait for that run to "
            f"finish (or stop it) before running or resuming here")

    def _info(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n"

    def acquire(self) -> "RunLock":
        if self.out.exists() and not self.out.is_dir():
            raise RunFolderError(f"run.output_dir {self.out} is a file, not a folder; choose "
                                 "another run.output_dir (or move the file away)")
        self.out.mkdir(parents=True, exist_ok=True)
        refuse_link(self.path)
        if fcntl is None:  # pragma: no cover - no fcntl
            return self._acquire_exclusive_file()
        fd = os.open(self.out, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise self._busy() from None
        stat = os.fstat(fd)
        self._fd, self._inode = fd, (stat.st_dev, stat.st_ino)
        try:
            write_file(self.path, self._info(), fsync=False)
        except BaseException:
            self.release()
            raise
        return self

    def _acquire_exclusive_file(self) -> "RunLock":  # pragma: no cover - no fcntl
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                held = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                held = {}
            if held.get("host") == socket.gethostname() and not pid_alive(int(held.get("pid", 0))):
                self.path.unlink()  # stale: its process is gone
                return self._acquire_exclusive_file()
            raise self._busy() from None
        os.write(fd, self._info().encode())
        self._fd = fd
        return self

    def verify(self) -> None:
        """`RunFolderError` when the run folder's path no longer names the folder this lock
        holds (deleted, moved or replaced while the run held it): another process may hold the
        new one, so this run stops instead of writing there."""
        if self._fd is None or self._inode is None:
            return
        try:
            stat = os.stat(self.out)
            now = (stat.st_dev, stat.st_ino)
        except OSError:
            now = None
        if now != self._inode:
            raise RunFolderError(
                f"run folder {self.out} was deleted, moved or replaced while this run held it; "
                "stopping so as not to write into a folder another run may hold (resume from "
                "the folder's checkpoints with --resume)")

    def release(self) -> None:
        if self._fd is None:
            return
        if fcntl is None:  # pragma: no cover
            try:
                self.path.unlink()
            except OSError:
                pass
        else:
            try:
                self.verify()
                if self.path.is_file() and not self.path.is_symlink():
                    self.path.unlink()
            except (OSError, RunFolderError):
                pass  # not ours to tidy any more
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = self._inode = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
