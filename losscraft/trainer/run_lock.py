"""One process per run folder: an exclusive lock on ``<run>/.losscraft-lock``.

The lock is an OS file lock (``fcntl.flock``), so it disappears with the process that held it —
a killed run never leaves a lock that blocks the next one. The file also records the holder's
pid, host and start time, which is what a refused second process is told. Where ``fcntl`` does
not exist, the file is created exclusively instead and a lock naming a dead process on this host
is treated as stale.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from losscraft.errors import RunFolderError
from losscraft.trainer.run_folder import LOCK, pid_alive

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


def _describe(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info.get('pid')} on host {info.get('host')} since {info.get('since')}"
    except (OSError, ValueError):
        return "another process"


class RunLock:
    """Context manager holding the run lock of folder ``out`` (created if needed)."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.path = self.out / LOCK
        self._fd: int | None = None

    def _busy(self) -> RunFolderError:
        return RunFolderError(
            f"run folder {self.out} is in use by {_describe(self.path)}; wait for that run to "
            f"finish (or stop it) before running or resuming here")

    def acquire(self) -> "RunLock":
        self.out.mkdir(parents=True, exist_ok=True)
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "since": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n"
        if fcntl is not None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._busy() from None
            os.ftruncate(fd, 0)
            os.write(fd, info.encode())
            self._fd = fd
            return self
        try:  # pragma: no cover - no fcntl
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # pragma: no cover
            try:
                held = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                held = {}
            if held.get("host") == socket.gethostname() and not pid_alive(int(held.get("pid", 0))):
                self.path.unlink()  # stale: its process is gone
                return self.acquire()
            raise self._busy() from None
        os.write(fd, info.encode())  # pragma: no cover
        self._fd = fd  # pragma: no cover
        return self  # pragma: no cover

    def release(self) -> None:
        if self._fd is None:
            return
        if fcntl is None:  # pragma: no cover
            try:
                self.path.unlink()
            except OSError:
                pass
        else:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
