"""The run folder's contract: what a run owns there, and that it never writes or deletes outside.

A run folder carries a marker file (`MARKER`); ``--overwrite`` deletes only a folder that has one,
and inside it only the entries a run creates (`OWNED`) — anything else the user put there stays.
`inside` refuses a path that leaves the run folder or passes through a symbolic link in it; the
trainer passes every path it writes or deletes through it, and writes every file with
`losscraft.runtime.safe_files` (a fresh temporary name, renamed into place; logs appended with
``O_NOFOLLOW``), so a link planted where the run expects its own file is an error naming it,
never written through (`check_no_links` looks for one before the run writes anything). Names
that become folder names (stages, experts) must be simple names (`check_name`), which
`losscraft validate` checks too. A run killed before its first checkpoint leaves nothing a
restart would lose (`has_progress`), so a plain run starts it again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from losscraft.errors import LosscraftError, RunFolderError
from losscraft.runtime.manifest import MANIFEST, RUN_MARKER, write_manifest
from losscraft.runtime.safe_files import open_append, refuse_link, write_file
from losscraft.trainer import checkpoint as ckpt

MARKER = RUN_MARKER
LOCK = ".losscraft-lock"
#: Entries of a run folder that a run writes (and ``--overwrite`` may delete).
OWNED = ("checkpoints", "stages", "final", "final.tmp", "final.old", "metrics.jsonl",
         "recipe.json", "recipe_history.jsonl", "run.json", "summary.json", "summary.md",
         "summary", MARKER)


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, after checking it lies inside ``root``: lexically (no ``..`` out of
    it), with no symbolic link on the way from ``root`` down to it (the run folder itself may be
    a link), and resolved (links followed) still inside. A link is refused naming it."""
    root, path = Path(root), Path(path)
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == ".." or rel.startswith(".." + os.sep) or os.path.isabs(rel):
        raise RunFolderError(f"refusing to write {path}: it is outside the run folder {root}")
    node = root
    for part in ([] if rel == "." else Path(rel).parts):
        node = node / part
        refuse_link(node)
        if not os.path.lexists(node):
            break
    root_resolved = root.resolve()
    resolved = path.resolve()
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
    marker = Path(out) / MARKER
    return marker.is_file() and not marker.is_symlink()


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds (part of) a run: a marker, checkpoints, stage models or a final."""
    out = Path(out)
    return any(os.path.lexists(out / name) for name in (MARKER, "checkpoints", "stages", "final"))


def has_progress(out: Path) -> bool:
    """Whether run folder ``out`` holds anything a restart would lose: a checkpoint (or the
    ``latest`` pointer), a stage model or ``final/``. A run killed before its first checkpoint
    holds none of these (only its recipe, log and half-written temporary folders)."""
    out = Path(out)
    checkpoints = out / "checkpoints"
    if os.path.lexists(checkpoints / "latest") or os.path.lexists(out / "final"):
        return True
    if checkpoints.is_dir() and any(ckpt.CHECKPOINT_NAME.fullmatch(p.name)
                                    for p in checkpoints.iterdir()):
        return True
    stages = out / "stages"
    return stages.is_dir() and any(os.path.lexists(p / "model") for p in stages.iterdir())


def write_marker(out: Path) -> None:
    """Mark ``out`` as a losscraft run folder (kept if already there)."""
    import losscraft

    marker = Path(out) / MARKER
    refuse_link(marker)
    if not marker.is_file():
        write_file(marker, json.dumps({"losscraft": losscraft.__version__,
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
        if name == MARKER or not os.path.lexists(path):
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            inside(out, path)
            shutil.rmtree(path)
    for path in out.iterdir():  # temporary files of writes a killed run left behind
        if _scratch(path.name) and not path.is_symlink() and path.is_file() and \
                any(path.name.startswith(f".{name}.") for name in (*OWNED, LOCK)):
            path.unlink()
    (out / MARKER).unlink()
    return sorted(p.name for p in out.iterdir() if p.name != LOCK)


def _scratch(name: str) -> bool:
    """A temporary file of `losscraft.runtime.safe_files.write_file` left by a killed run."""
    return name.startswith(".") and name.endswith(".tmp")


def remove_inside(root: Path, path: Path) -> None:
    """``shutil.rmtree`` of ``path`` after checking it lies inside ``root`` (a symbolic link
    there is refused, naming it)."""
    inside(root, path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


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
def check_output_dir(out: Path) -> None:
    """``run.output_dir`` must be a folder (or not exist yet): a file there is a one-line
    `RunFolderError`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"run.output_dir {out} is a file, not a folder; choose another "
                             "run.output_dir (or move the file away)")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"run.output_dir {out}: {parent} is a file, not a folder")


def check_no_links(out: Path) -> None:
    """A run never creates symbolic links, so one among the entries a run owns (``OWNED``, the
    lock, anything inside ``checkpoints/``, ``stages/``, ``final*``) was put there by someone
    else: a `RunFolderError` naming it, before the run writes anything."""
    out = Path(out)
    if not out.is_dir():
        return
    for name in (*OWNED, LOCK):
        path = out / name
        refuse_link(path)
        if path.is_dir():
            for folder, dirs, files in os.walk(path, followlinks=False):
                for entry in (*dirs, *files):
                    refuse_link(Path(folder) / entry)


def prepare(out: Path, *, recipe_raw: dict, resume: bool, overwrite: bool, console) -> None:
    """Make ``out`` ready for a run: refuse (or, with ``overwrite``, clear what a run owns in)
    a folder that already holds one, mark it, and — for a fresh run — write ``recipe.json`` and
    the first ``recipe_history.jsonl`` entry. A folder whose run stopped before its first
    checkpoint holds nothing a restart would lose: a plain run starts it again."""
    check_output_dir(out)
    if not overwrite:  # --overwrite removes links among the owned entries (never following)
        check_no_links(out)
    existing = holds_run(out)
    if existing and not resume:
        if overwrite:
            kept = remove_owned(out)
            if kept:
                console.print(f"--overwrite: kept {len(kept)} entries that are not part of "
                              f"the run: {', '.join(kept[:8])}", highlight=False)
        elif is_run_folder(out) and not has_progress(out):
            console.print(f"note: {out} holds a run that stopped before its first checkpoint "
                          "(nothing to resume); starting it again", highlight=False)
            remove_owned(out)
        else:
            raise LosscraftError(
                f"output folder {out} already holds a run; pass --resume to continue "
                "it, --overwrite to replace it, or --set run.output_dir=... for a new one")
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out)
    if not resume:
        write_file(out / "recipe.json", json.dumps(recipe_raw, indent=2, default=str))
        record_recipe(out, recipe_raw, "start", {})


def record_recipe(out: Path, recipe_raw: dict, mode: str, changes: dict) -> None:
    """Append this invocation's recipe (and the changes a resume applied) to
    ``recipe_history.jsonl``; ``recipe.json`` stays the recipe the run started with."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": mode,
             "changes": {k: list(v) for k, v in changes.items()}, "recipe": recipe_raw}
    with open_append(out / "recipe_history.jsonl") as f:
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
    inside(out, folder)
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
    write_manifest(tmp)
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
    (tmp / MANIFEST).unlink(missing_ok=True)  # a hard link to the stage's manifest
    write_manifest(tmp)
    ckpt.install_folder(tmp, final)
    return final


def write_run_info(out: Path, info: dict) -> None:
    """``run.json``: where the run's models are, its last metrics and the versions that ran.
    (Readers resolve the models inside the run folder they find it in — `losscraft eval RUN`
    — so a copied or moved run folder still names its own models.)"""
    import losscraft
    import torch

    record = {"recipe": info["recipe"], "name": info["name"], "losscraft": losscraft.__version__,
              "torch": torch.__version__, **{k: v for k, v in info.items()
                                             if k not in ("recipe", "name")}}
    write_file(Path(out) / "run.json", json.dumps(record, indent=2, default=str))
