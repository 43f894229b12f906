"""Resuming a run: which checkpoint to continue from (the newest that passes verification), what
the recipe changed since, and putting a resumed stage on a changed length's schedule."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from losscraft import distributed
from losscraft.errors import CheckpointError, LosscraftError, RecipeChangedError
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.trainer import checkpoint as ckpt
from losscraft.trainer.fingerprint import check_resume_changes
from losscraft.trainer.train_state import TrainState


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, and what the recipe changed since it was written."""

    directory: Path
    state: TrainState
    changes: dict = field(default_factory=dict)     # recipe key -> (old, new)
    fallback: dict | None = None                    # rejected newer checkpoints, if any

    def finished(self, index: int) -> bool:
        """Whether stage ``index`` was finished before this checkpoint."""
        return index < self.state.stage_index or (index == self.state.stage_index
                                                  and self.state.stage_done)


def find_resume_point(checkpoints: Path, recipe: Recipe, normalised: dict, console
                      ) -> ResumePoint:
    """The newest checkpoint in ``checkpoints`` that passes verification, checked against the
    recipe as it is now (same stage there; only changes a resume may apply, each printed)."""
    found = ckpt.find_resume_checkpoint(checkpoints)
    if found is None:
        raise LosscraftError(f"--resume: no checkpoint in {checkpoints}")
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
    point.changes = check_resume_changes(ckpt.read_recipe(latest), normalised,
                                         finished_stages=finished)
    stage = stages[state.stage_index]
    if state.data_position != state.stage_step * stage.grad_accum:
        raise CheckpointError(f"{latest}/state.json: data_position {state.data_position} does "
                              f"not match stage_step {state.stage_step} × grad_accum "
                              f"{stage.grad_accum}")
    for key, (old, new) in point.changes.items():
        console.print(f"resume: applying changed {key}: {old!r} -> {new!r}", highlight=False)
    return point


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
