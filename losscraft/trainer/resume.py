"""Resuming a run: which checkpoint to continue from (the newest that passes verification), what
the recipe changed since, and putting a resumed stage on a changed length's schedule."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from losscraft import distributed
from losscraft.errors import CheckpointError, LosscraftError, RecipeChangedError
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.trainer import checkpoint as ckpt
from losscraft.trainer import run_folder
from losscraft.trainer.fingerprint import check_resume_changes
from losscraft.trainer.train_state import TrainState


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, and what the recipe changed since it was written."""

    directory: Path
    state: TrainState
    changes: dict = field(default_factory=dict)     # recipe key -> (old, new)
    fallback: dict | None = None                    # rejected newer checkpoints, if any
    log_every: int = 1                              # the sparsest logging the run has used

    def finished(self, index: int) -> bool:
        """Whether stage ``index`` was finished before this checkpoint."""
        return index < self.state.stage_index or (index == self.state.stage_index
                                                  and self.state.stage_done)


def find_resume_point(checkpoints: Path, recipe: Recipe, normalised: dict, console, *,
                      force_recipe: bool = False) -> ResumePoint:
    """The newest checkpoint in ``checkpoints`` that passes verification and is consistent with
    itself (`consistency_check`), checked against the recipe as it is now (same stage there;
    only changes a resume may apply, each printed). A checkpoint or run folder without its
    recipe stops here unless ``force_recipe``."""
    out = Path(checkpoints).parent
    try:
        found = ckpt.find_resume_checkpoint(checkpoints, check=consistency_check(recipe))
    except CheckpointError as exc:
        if not run_folder.has_progress(out):
            raise LosscraftError(_nothing_to_resume(out)) from None
        raise CheckpointError(f"{exc} (to start the run again instead, discarding them: "
                              "--overwrite)") from None
    if found is None:
        raise LosscraftError(_nothing_to_resume(out))
    latest, state, problems = found
    for problem in problems:
        console.print(f"[bold yellow]checkpoint rejected:[/] {problem}", highlight=False)
    point = ResumePoint(latest, state)
    if problems:
        console.print(f"[bold yellow]falling back[/] to the previous good checkpoint "
                      f"{latest.name}", highlight=False)
        point.fallback = {"used": latest.name, "rejected": problems}
    stages = recipe.stages
    if state.stage_index >= len(stages) or stages[state.stage_index].name != state.stage_name:
        raise RecipeChangedError(
            f"--resume: checkpoint {latest} is in stage '{state.stage_name}' "
            f"(#{state.stage_index}), which is not that stage of the recipe "
            f"({', '.join(s.name for s in stages)})")
    finished = {s.name for i, s in enumerate(stages) if point.finished(i)}
    saved = ckpt.read_recipe(latest)
    missing = [str(p) for p, there in ((latest / "recipe.json", saved is not None),
                                       (out / "recipe.json", os.path.lexists(out / "recipe.json")))
               if not there]
    if missing and not force_recipe:
        raise RecipeChangedError(
            f"--resume: {' and '.join(missing)} missing, so the recipe cannot be compared with "
            "the one the run was trained with; resume with --force-recipe to continue with the "
            "recipe as given (recorded in recipe_history.jsonl), or start a new run")
    if missing:
        console.print(f"[bold yellow]--force-recipe:[/] {' and '.join(missing)} missing; "
                      "resuming with the recipe as given, unchecked", highlight=False)
        point.changes = {"recipe (forced, unchecked)": ("<missing>", "as given")}
    else:
        point.changes = check_resume_changes(saved, normalised, finished_stages=finished)
    saved_run = saved.get("run") if isinstance(saved, dict) else None
    logged = saved_run.get("log_every") if isinstance(saved_run, dict) else None
    point.log_every = max(recipe.run.log_every, logged if isinstance(logged, int) else 1)
    for key, (old, new) in point.changes.items():
        console.print(f"resume: applying changed {key}: {old!r} -> {new!r}", highlight=False)
    return point


def _nothing_to_resume(out: Path) -> str:
    return (f"--resume: {out} holds no checkpoint — the run stopped before its first one, so "
            "nothing would be lost: start it again with a plain `losscraft run` (without "
            "--resume), or pass --overwrite")


def consistency_check(recipe: Recipe):
    """``check(folder, state)`` for `losscraft.trainer.checkpoint.find_resume_checkpoint`:
    ``state.json`` against the recipe the checkpoint was written with (the current one when it
    has none) — the data position is ``stage_step × grad_accum``, and the steps before the
    stage (``global_step − stage_step``) are the global step of the previous stage's end marker
    (0 in the first stage). A failing checkpoint is passed over for the previous good one."""

    def check(folder: Path, state: TrainState) -> None:
        saved = ckpt.read_recipe(folder) or {}
        listed = saved.get("stages")
        stages = [(s.get("name"), s.get("grad_accum")) for s in listed
                  if isinstance(s, dict)] if isinstance(listed, list) else []
        stages = stages or [(s.name, s.grad_accum) for s in recipe.stages]
        if state.stage_index >= len(stages) or stages[state.stage_index][0] != state.stage_name:
            return  # reported as a recipe change once chosen
        grad_accum = stages[state.stage_index][1]
        if isinstance(grad_accum, int) and state.data_position != state.stage_step * grad_accum:
            raise CheckpointError(f"{folder}/state.json: data_position {state.data_position} "
                                  f"does not match stage_step {state.stage_step} × grad_accum "
                                  f"{grad_accum}")
        before = 0
        if state.stage_index > 0:
            marker = folder.parent / (f"stage-{state.stage_index - 1:02d}-"
                                      f"{stages[state.stage_index - 1][0]}-end")
            try:
                before = ckpt.verify_checkpoint(marker).global_step
            except CheckpointError as exc:
                raise CheckpointError(f"{folder}: the previous stage's end marker does not "
                                      f"verify ({exc})") from None
        if state.global_step - state.stage_step != before:
            raise CheckpointError(
                f"{folder}/state.json: global_step {state.global_step} and stage_step "
                f"{state.stage_step} disagree ({before} steps ran before stage "
                f"'{state.stage_name}')")

    return check


def announce(point: ResumePoint, console, world_size: int) -> None:
    """Say where the run continues from (and what a changed process count means)."""
    state = point.state
    console.print(f"[bold]resuming[/] from {point.directory} (stage {state.stage_name}, "
                  f"step {state.stage_step})")
    if state.world_size != world_size:
        console.print(distributed.resume_note(state.world_size), highlight=False)


def apply_length_change(changes: dict, stage: StageSpec, state: TrainState, steps: int,
                        optimizer, scheduler) -> None:
    """A resumed stage whose ``max_steps``/``epochs`` changed: check the checkpoint is not past
    the new end, and put the learning rate on the new schedule now (the restored optimizer would
    otherwise use the old schedule's rate for one step)."""
    if state.stage_step > steps:
        raise RecipeChangedError(
            f"--resume: the checkpoint is at step {state.stage_step} of stage "
            f"'{stage.name}', past its new length of {steps} steps")
    if not any(k in changes for k in
               (f"stages.{stage.name}.max_steps", f"stages.{stage.name}.epochs")):
        return
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        return
    rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas)]
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = rates


def check_warmup(stage: StageSpec, steps: int, console) -> None:
    """Warn when ``warmup_steps`` is longer than the stage's ``steps`` (accepted, so that a stage
    shortened for a quick try — ``--set stages.<name>.max_steps=2`` — still runs): the learning
    rate never reaches ``lr``, the stage trains at most at ``steps / warmup_steps`` of it."""
    if stage.warmup_steps > steps:
        console.print(f"[bold yellow]warning:[/] {stage.key}.warmup_steps = {stage.warmup_steps} "
                      f"is longer than the stage's {steps} steps: the learning rate never "
                      f"reaches lr (at most {steps / stage.warmup_steps:.2g} × lr)",
                      highlight=False)
