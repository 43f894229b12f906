"""``manifest.json``: every file of a folder with its SHA-256, written after the files are
fsynced. Checkpoints, stage models and ``final/`` carry one; `verify_manifest` checks a folder
against it (every listed file present with its digest, nothing listed outside the folder)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from losscraft.errors import CheckpointError

MANIFEST = "manifest.json"
FORMAT = 2
#: The file marking a losscraft run folder (`losscraft.trainer.run_folder`): model folders inside
#: one were written by a run, so they must carry a manifest.
RUN_MARKER = ".losscraft-run"


def in_run_folder(folder: Path, levels: int = 4) -> bool:
    """Whether ``folder`` lies (up to ``levels`` folders down) inside a losscraft run folder:
    ``final/``, ``stages/<stage>/model``, its ``adapter/``."""
    folder = Path(folder).absolute()
    return any((parent / RUN_MARKER).is_file() for parent in list(folder.parents)[:levels])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (no-op where directories can't be
    opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(folder: Path, extra: dict[str, Any] | None = None) -> None:
    """fsync every file of ``folder`` and list it with its SHA-256 in ``manifest.json``."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise CheckpointError(f"{path}: a symbolic link inside a folder being saved")
        if path.is_file() and path.name != MANIFEST:
            fsync_file(path)
            rel = path.relative_to(folder).as_posix()
            files[rel] = {"sha256": sha256(path), "bytes": path.stat().st_size}
    (folder / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files, **(extra or {})},
                                              indent=2))
    fsync_file(folder / MANIFEST)
    fsync_dir(folder)


def read_manifest(folder: Path) -> dict[str, Any]:
    """``folder``'s manifest, checked for shape (`CheckpointError` when missing or malformed)."""
    path = Path(folder) / MANIFEST
    try:
        if path.is_symlink():
            raise ValueError("a symbolic link")
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if not isinstance(files, dict):
            raise ValueError("no file list")
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {MANIFEST}") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, OSError):
        raise CheckpointError(f"{path}: not a valid manifest") from None
    return manifest


def verify_manifest(folder: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check ``folder`` against its manifest (every listed file present with its SHA-256, every
    ``required`` file listed); returns the manifest or raises `CheckpointError` saying what
    differs."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    files = manifest["files"]
    for name in required:
        if name not in files:
            raise CheckpointError(f"{folder}: {name} is not in the manifest")
    for name, entry in files.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise CheckpointError(f"{folder}/{MANIFEST}: lists {name!r}, outside the folder")
        file = folder / relative
        if file.is_symlink() or not file.is_file():
            raise CheckpointError(f"{file}: listed in the manifest but missing")
        if not isinstance(entry, dict) or sha256(file) != entry.get("sha256"):
            raise CheckpointError(f"{file}: SHA-256 does not match the manifest (corrupted)")
    return manifest
