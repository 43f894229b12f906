"""A stage's cache of sampled rows (mined negatives, replayed replies): a JSONL file whose first
line holds a key of every setting that decides the rows, then one row per example, in order.
A file whose key or row count does not match is ignored (the rows are sampled again); files are
replaced atomically, so a crash never leaves half a cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from losscraft.runtime.safe_files import write_file


def cache_key(parts: Any) -> str:
    """A short stable key of ``parts`` (JSON-able; anything else by ``str``)."""
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read_rows(path: Path) -> list[dict] | None:
    """Every row of the cache ``path`` whatever its key (``None`` when there is no file): for
    reports on a finished run."""
    if not path.is_file():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()[1:]
    return [json.loads(line) for line in lines if line.strip()]


def read_cached_rows(path: Path, key: str, count: int) -> list[dict] | None:
    """The rows of ``path`` when it was written under ``key`` with ``count`` rows, else None."""
    if not path.is_file():
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or json.loads(lines[0]).get("settings") != key:
            return None
        rows = [json.loads(line) for line in lines[1:]]
    except (ValueError, AttributeError, RecursionError):  # damaged: sample the rows again
        return None
    return rows if len(rows) == count else None


def write_cached_rows(path: Path, key: str, rows: list[dict]) -> None:
    """Write ``rows`` under ``key`` to ``path`` (atomically through a fresh temporary name, never
    through a symlink; creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"settings": key})] + [json.dumps(row) for row in rows]
    write_file(path, "\n".join(lines) + "\n")
