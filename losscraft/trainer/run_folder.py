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

from losscraft.errors import LosscraftError, RunFolderError
from losscraft.trainer import checkpoint as ckpt

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


# ----------------------------------------------------------------------------- what a run writes
def prepare(out: Path, *, recipe_raw: dict, resume: bool, overwrite: bool, console) -> None:
    """Make ``out`` ready for a run: refuse (or, with ``overwrite``, clear what a run owns in)
    a folder that already holds one, mark it, and — for a fresh run — write ``recipe.json`` and
    the first ``recipe_history.jsonl`` entry."""
    existing = holds_run(out)
    if existing and not resume:
        if not overwrite:
            raise LosscraftError(
                f"output folder {out} already holds a run; pass --resume to continue "
                "it, --overwrite to replace it, or --set run.output_dir=... for a new one")
        kept = remove_owned(out)
        if kept:
            console.print(f"--overwrite: kept {len(kept)} entries that are not part of "
                          f"the run: {', '.join(kept[:8])}", highlight=False)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out)
    if not resume:
        (out / "recipe.json").write_text(json.dumps(recipe_raw, indent=2, default=str))
        record_recipe(out, recipe_raw, "start", {})


def record_recipe(out: Path, recipe_raw: dict, mode: str, changes: dict) -> None:
    """Append this invocation's recipe (and the changes a resume applied) to
    ``recipe_history.jsonl``; ``recipe.json`` stays the recipe the run started with."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": mode,
             "changes": {k: list(v) for k, v in changes.items()}, "recipe": recipe_raw}
    with open(out / "recipe_history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")


def save_model(out: Path, folder: Path, model, tokenizer, *, adapter=None, weights: bool = True,
               full_state: dict | None = None) -> None:
    """Write a model folder inside run folder ``out`` atomically: ``save_pretrained`` weights
    (safetensors; ``full_state`` replaces the model's own under FSDP) and tokenizer, ``adapter``
    (an expert stage's LoRA adapter snapshot) into ``adapter/`` — alone, without the weights,
    when ``weights`` is false — then a manifest, then the rename into place."""
    from losscraft.models.adapters import ADAPTER_DIR

    ckpt.check_finite_weights(full_state if full_state is not None else
                              dict(model.state_dict()), f"model {folder}")
    tmp = folder.with_name(folder.name + ".tmp")
    remove_inside(out, tmp)
    if weights:
        model.save_pretrained(tmp, safe_serialization=True,
                              **({"state_dict": full_state} if full_state is not None else {}))
    else:
        tmp.mkdir(parents=True)
    tokenizer.save_pretrained(tmp)
    if adapter is not None:
        adapter.save(tmp / ADAPTER_DIR)
    ckpt.write_manifest(tmp)
    ckpt.install_folder(tmp, folder)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link (no second copy of the weights on disk) where the filesystem allows."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def install_final(out: Path, last_stage_model: Path) -> Path:
    """``final/``: the last stage's model folder, hard-linked where possible, with its own
    manifest, renamed into place."""
    final, tmp = out / "final", out / "final.tmp"
    inside(out, final)
    remove_inside(out, tmp)
    shutil.copytree(last_stage_model, tmp, copy_function=_link_or_copy)
    (tmp / ckpt.MANIFEST).unlink(missing_ok=True)  # a hard link to the stage's manifest
    ckpt.write_manifest(tmp)
    ckpt.install_folder(tmp, final)
    return final


def write_run_info(out: Path, info: dict) -> None:
    """``run.json``: where the run's models are, its last metrics and the versions that ran."""
    import losscraft
    import torch

    record = {"recipe": info["recipe"], "name": info["name"], "losscraft": losscraft.__version__,
              "torch": torch.__version__, **{k: v for k, v in info.items()
                                             if k not in ("recipe", "name")}}
    (out / "run.json").write_text(json.dumps(record, indent=2, default=str))
