"""Checkpoints: trainable weights, optimizer, scheduler, RNG states and the data position.

Everything is plain data — tensors in safetensors files, the rest in JSON (see
`losscraft.trainer.plain_state`) — so loading a checkpoint never unpickles anything. A checkpoint
is written into a temporary folder whose files are fsynced, listed with their SHA-256 in
``manifest.json``, then renamed into place (the parent folder fsynced before and after), and only
then does ``latest`` point at it. `find_resume_checkpoint` verifies the manifest and
``state.json``; a checkpoint that fails is reported and the newest one that passes is used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from losscraft import distributed
from losscraft.distributed import sharding
from losscraft.errors import CheckpointError, NonFiniteError
from losscraft.runtime.manifest import fsync_dir, verify_manifest, write_manifest
from losscraft.runtime.safe_files import make_dir, refuse_link, write_file
from losscraft.trainer.checkpoint_tensors import (check_optimizer_fits, check_saved_tensors,
                                                  check_weights_fit)
from losscraft.trainer.plain_state import from_plain, to_plain
from losscraft.trainer.train_state import TrainState, parse_state, rng_state, set_rng_state

#: Files of a full checkpoint; a stage-end marker holds only ``state.json`` (+ recipe, manifest).
FULL_FILES = ("trainable.safetensors", "training_state.safetensors", "training_state.json",
              "state.json")
#: Names a checkpoint folder (and so ``latest``) may have.
CHECKPOINT_NAME = re.compile(r"(step-\d{6,}|stage-\d{2}-[A-Za-z0-9_][A-Za-z0-9_.-]*-end)")


# ----------------------------------------------------------------------------- files
def install_folder(tmp: Path, directory: Path) -> None:
    """Rename the finished ``tmp`` to ``directory`` (replacing an older copy) durably. A symbolic
    link at ``directory`` or at its ``.old`` name is refused, naming it."""
    old = directory.with_name(directory.name + ".old")
    refuse_link(directory)
    refuse_link(old)
    fsync_dir(tmp.parent)
    if directory.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    fsync_dir(directory.parent)


def point_latest(directory: Path) -> None:
    """Atomically make ``<parent>/latest`` name ``directory``."""
    write_file(directory.parent / "latest", directory.name)
    fsync_dir(directory.parent)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def check_finite_weights(weights: dict[str, torch.Tensor], where: str) -> None:
    """Refuse to save non-finite weights (`NonFiniteError` naming the first bad tensor)."""
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(f"not saving {where}: parameter '{name}' has NaN/inf values")


def _new_tmp(directory: Path) -> Path:
    """A fresh, empty ``<directory>.tmp`` (a symbolic link at either name is refused)."""
    tmp = directory.with_name(directory.name + ".tmp")
    make_dir(directory.parent)
    refuse_link(directory)
    refuse_link(tmp)
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    tmp.mkdir()
    return tmp


def save_checkpoint(directory: Path, *, model, optimizer, scheduler, state: TrainState,
                    generator: torch.Generator | None = None,
                    recipe: dict[str, Any] | None = None,
                    rank_rngs: list[dict[str, Any]] | None = None,
                    full_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
                    ) -> Path:
    """Write ``directory`` atomically (verified by a manifest) and point ``latest`` at it.
    ``recipe`` (the normalised recipe, `losscraft.trainer.fingerprint`) is stored with it;
    ``rank_rngs`` are the RNG states (`rng_state`) of ranks 1, 2, ... of a data-parallel run
    (this process, rank 0, saves its own as usual). ``full_state``: the trainable weights and
    optimizer state of a sharded (FSDP) model, gathered by `losscraft.distributed.sharding`, saved instead
    of ``model``'s and ``optimizer``'s own (which hold one rank's shards)."""
    directory = Path(directory)
    weights = trainable_state(model) if full_state is None else \
        {n: t.contiguous() for n, t in full_state[0].items()}
    check_finite_weights(weights, f"checkpoint {directory.name}")
    tmp = _new_tmp(directory)
    save_file(weights, str(tmp / "trainable.safetensors"))
    tensors: dict[str, torch.Tensor] = {}
    optimizer_state = optimizer.state_dict() if full_state is None else full_state[1]
    plain = {"optimizer": to_plain(optimizer_state, tensors, "optimizer"),
             "scheduler": to_plain(scheduler.state_dict(), tensors, "scheduler"),
             "rng": to_plain(rng_state(generator), tensors, "rng")}
    if rank_rngs:
        plain["rank_rng"] = [to_plain(r, tensors, f"rank_rng{i + 1}")
                             for i, r in enumerate(rank_rngs)]
    save_file(tensors, str(tmp / "training_state.safetensors"))
    (tmp / "training_state.json").write_text(json.dumps(plain))
    _write_common(tmp, state, recipe)
    install_folder(tmp, directory)
    point_latest(directory)
    return directory


def save_marker(directory: Path, state: TrainState, recipe: dict[str, Any] | None = None) -> Path:
    """A weight-less checkpoint recording that a stage finished (its model is saved beside)."""
    directory = Path(directory)
    tmp = _new_tmp(directory)
    _write_common(tmp, state, recipe)
    install_folder(tmp, directory)
    point_latest(directory)
    return directory


def _write_common(tmp: Path, state: TrainState, recipe: dict[str, Any] | None) -> None:
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
    extra = {}
    if recipe is not None:
        from losscraft.trainer.fingerprint import fingerprint

        (tmp / "recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True,
                                                    default=str))
        extra["recipe_fingerprint"] = fingerprint(recipe)
    write_manifest(tmp, extra)


# ----------------------------------------------------------------------------- reading
_UNREADABLE = (OSError, ValueError, UnicodeDecodeError, RecursionError)


def _read_json(path: Path) -> Any:
    if path.is_symlink():
        raise CheckpointError(f"{path}: a symbolic link, not a file of the checkpoint")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except _UNREADABLE as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.__class__.__name__})") from None


def read_state(directory: Path) -> TrainState:
    path = Path(directory) / "state.json"
    return parse_state(_read_json(path), str(path))


def read_recipe(directory: Path) -> dict[str, Any] | None:
    """The normalised recipe stored with a checkpoint (``None`` when it has none)."""
    path = Path(directory) / "recipe.json"
    if not os.path.lexists(path):
        return None
    recipe = _read_json(path)
    if not isinstance(recipe, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return recipe


def verify_checkpoint(directory: Path) -> TrainState:
    """Verify ``directory`` (manifest checksums, required files, ``state.json`` schema and its
    consistency with the folder's name and kind, every tensor finite) and return its state;
    raises `CheckpointError` saying what is wrong."""
    directory = Path(directory)
    if directory.is_symlink() or not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder missing")
    manifest = verify_manifest(directory, required=("state.json",))
    state = read_state(directory)
    if directory.name.startswith("step-"):
        missing = [name for name in FULL_FILES if name not in manifest["files"]]
        if missing:
            raise CheckpointError(f"{directory}: {', '.join(missing)} missing")
        if state.stage_done:
            raise CheckpointError(f"{directory}/state.json: stage_done = true in a mid-stage "
                                  "checkpoint (only a stage-end marker finishes a stage)")
        expected = f"step-{state.global_step:06d}"
    else:
        expected = f"stage-{state.stage_index:02d}-{state.stage_name}-end"
        if not state.stage_done:
            raise CheckpointError(f"{directory}/state.json: a stage-end marker with "
                                  "stage_done = false")
    if directory.name != expected:
        raise CheckpointError(f"{directory}/state.json: its step/stage ({state.global_step}, "
                              f"{state.stage_name}) do not match the folder name")
    if "recipe_fingerprint" in manifest and "recipe.json" not in manifest["files"]:
        raise CheckpointError(f"{directory}: recipe.json missing (the manifest records its "
                              "fingerprint)")
    if directory.name.startswith("step-"):
        check_saved_tensors(directory)
    return state


def _pointer(checkpoints: Path) -> tuple[Path | None, str | None]:
    """The folder ``latest`` names, or ``(None, why)`` when the pointer is unusable."""
    pointer = checkpoints / "latest"
    if pointer.is_symlink():
        return None, f"{pointer} is a symbolic link, not the run's own pointer"
    if not pointer.is_file():
        return None, "no 'latest' pointer"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None, f"{pointer} is unreadable"
    if not CHECKPOINT_NAME.fullmatch(name):
        return None, f"{pointer} names {name!r}, which is not a checkpoint of this folder"
    return checkpoints / name, None


def _order(state: TrainState) -> tuple[int, int, int]:
    return state.global_step, state.stage_index, int(state.stage_done)


def find_resume_checkpoint(checkpoints: Path, check=None
                           ) -> tuple[Path, TrainState, list[str]] | None:
    """The checkpoint to resume from: the one ``latest`` names if it verifies, else the newest
    verified one. ``check(folder, state)`` (optional) adds the caller's consistency checks,
    raising `CheckpointError` for a checkpoint to pass over. Returns ``(folder, state,
    problems)`` — ``problems`` describe every rejected checkpoint on the way — or ``None`` when
    no checkpoint verifies at all (the problems are raised as one `CheckpointError` if there
    were any)."""
    checkpoints = Path(checkpoints)

    def verified(folder: Path) -> TrainState:
        state = verify_checkpoint(folder)
        if check is not None:
            check(folder, state)
        return state

    problems: list[str] = []
    chosen, why = _pointer(checkpoints)
    if chosen is not None:
        try:
            return chosen, verified(chosen), problems
        except CheckpointError as exc:
            problems.append(str(exc))
    elif checkpoints.is_dir() and any(checkpoints.iterdir()):
        problems.append(str(why))
    good: list[tuple[tuple[int, int, int], Path, TrainState]] = []
    for folder in sorted(checkpoints.iterdir()) if checkpoints.is_dir() else []:
        if folder == chosen or not CHECKPOINT_NAME.fullmatch(folder.name) or folder.is_symlink():
            continue
        try:
            state = verified(folder)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        good.append((_order(state), folder, state))
    if good:
        _, folder, state = max(good, key=lambda item: item[0])
        return folder, state, problems
    if problems:
        raise CheckpointError("no checkpoint passes verification: " + "; ".join(problems))
    return None


def load_checkpoint(directory: Path, *, model, optimizer, scheduler,
                    generator: torch.Generator | None = None, rank: int = 0) -> TrainState:
    """Restore weights, optimizer, scheduler and RNG from a verified ``directory``. ``rank``
    (of a data-parallel run) restores that rank's RNG state when the checkpoint holds one — a
    run resumed with the same number of processes continues every rank's random streams;
    with another number, ranks without a saved state take rank 0's."""
    directory = Path(directory)
    try:
        weights = load_file(str(directory / "trainable.safetensors"))
        tensors = load_file(str(directory / "training_state.safetensors"))
        plain = json.loads((directory / "training_state.json").read_text(encoding="utf-8"))
        blob = from_plain(plain, tensors)
        if not isinstance(blob, dict):
            raise ValueError("training_state.json is not an object")
    except (SafetensorError, OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{directory}: cannot read ({exc})") from None
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != expected:
        raise CheckpointError(f"checkpoint {directory} does not match the model's trainable "
                              f"parameters ({len(weights)} saved vs {len(expected)} expected): "
                              "was the recipe's model or [lora] changed?")
    check_finite_weights(weights, f"from {directory}")  # never resume from NaN weights
    check_weights_fit(weights, model, directory)
    sharded = sharding.is_sharded(model)
    try:
        if sharded:  # FSDP: full weights and optimizer state, each rank keeps its shards
            sharding.load_full_state(model, optimizer, weights, blob["optimizer"])
        else:  # a sharded run's optimizer state is keyed by parameter name
            names = [n for n, p in model.named_parameters() if p.requires_grad]
            state = sharding.optimizer_state_keyed(blob["optimizer"], names, by_name=False)
            check_optimizer_fits(state, [p for p in model.parameters() if p.requires_grad],
                                 directory)
            device = next(model.parameters()).device
            model.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=False)
            optimizer.load_state_dict(state)
        scheduler.load_state_dict(blob["scheduler"])
        rank_rngs = blob.get("rank_rng") or []
        set_rng_state(rank_rngs[rank - 1] if 0 < rank <= len(rank_rngs) else blob["rng"],
                      generator)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{directory}: training state does not fit this run ({text})") \
            from None
    return read_state(directory)


# ----------------------------------------------------------------------------- the trainer's writes
def save_step_checkpoint(directory: Path, *, parallel, model, optimizer, scheduler,
                         state: TrainState, generator: torch.Generator | None,
                         recipe: dict[str, Any] | None) -> None:
    """The trainer's mid-stage checkpoint: every rank's RNG state (its dropout and sampling
    streams) and, under FSDP, the gathered full state go into rank 0's checkpoint. Every rank
    calls it (the gathers need all of them); rank 0 alone writes."""
    rank_rngs = distributed.gather_objects(rng_state(generator))
    state.world_size = parallel.world_size
    full_state = None
    if sharding.is_sharded(model):
        full_state = (sharding.full_model_state(model, trainable_only=True),
                      sharding.full_optimizer_state(model, optimizer))
    if not parallel.is_main:
        return
    save_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                    state=state, generator=generator, recipe=recipe, rank_rngs=rank_rngs[1:],
                    full_state=full_state)


def save_stage_end(directory: Path, *, parallel, state: TrainState,
                   recipe: dict[str, Any] | None) -> None:
    """The marker of a finished stage (rank 0 writes it)."""
    state.world_size = parallel.world_size
    if parallel.is_main:
        save_marker(directory, state, recipe=recipe)
