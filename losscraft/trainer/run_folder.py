"""The run folder's contract: what a run owns there, and that it never writes or deletes outside.

A run folder carries a marker file (`MARKER`); ``--overwrite`` deletes only a folder that has one,
and inside it only the entries a run creates (`OWNED`) — anything else the user put there stays.
`inside` resolves a path (symlinks included) and refuses one that leaves the run folder; the
trainer passes every path it writes or deletes through it. Names that become folder names (stages,
experts) must be simple names (`check_name`), which `losscraft validate` checks too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from losscraft.errors import RunFolderError
from losscraft.recipe.names import check_name  # noqa: F401  (re-exported)

MARKER = ".losscraft-run"
LOCK = ".losscraft-lock"
#: Entries of a run folder that a run writes (and ``--overwrite`` may delete).
OWNED = ("checkpoints", "stages", "final", "final.tmp", "final.old", "metrics.jsonl",
         "recipe.json", "recipe_history.jsonl", "run.json", "summary.json", "summary.md",
         "summary", MARKER)


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, after checking it lies inside ``root`` (symlinks followed)."""
    root_resolved = Path(root).resolve()
    resolved = Path(path).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise RunFolderError(f"refusing to write {path}: it resolves to {resolved}, outside the "
                             f"run folder {root_resolved}")
    return resolved


def outside_working_dir(out: Path) -> bool:
    """Whether ``out`` resolves outside the current working directory."""
    cwd = Path.cwd().resolve()
    resolved = Path(out).resolve()
    return resolved != cwd and cwd not in resolved.parents


def is_run_folder(out: Path) -> bool:
    return (Path(out) / MARKER).is_file()


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds (part of) a run: a marker, checkpoints, stage models or a final."""
    out = Path(out)
    return any((out / name).exists() for name in (MARKER, "checkpoints", "stages", "final"))


def write_marker(out: Path) -> None:
    """Mark ``out`` as a losscraft run folder (kept if already there)."""
    import losscraft

    marker = Path(out) / MARKER
    if not marker.is_file():
        marker.write_text(json.dumps({"losscraft": losscraft.__version__,
                                      "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                      "owned": list(OWNED)}) + "\n")


def remove_owned(out: Path) -> list[str]:
    """Delete the entries of run folder ``out`` that a run owns (never following a symlink out
    of it); returns the names of the entries left alone. Refuses a folder without the marker."""
    out = Path(out)
    if not is_run_folder(out):
        raise RunFolderError(
            f"--overwrite: {out} has no losscraft run marker ({MARKER}), so it is not known to be "
            "a run folder; refusing to delete anything there — remove it yourself or choose "
            "another run.output_dir")
    for name in OWNED:
        path = out / name
        if name == MARKER or not (path.exists() or path.is_symlink()):
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            inside(out, path)
            shutil.rmtree(path)
    (out / MARKER).unlink()
    return sorted(p.name for p in out.iterdir() if p.name != LOCK)


def remove_inside(root: Path, path: Path) -> None:
    """``shutil.rmtree`` of ``path`` after checking it lies inside ``root``."""
    inside(root, path)
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
