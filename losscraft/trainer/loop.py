"""The training loop: a run's stages in order (each a `losscraft.trainer.stage.StageRun`: model,
data, optimizer, steps, save), the run folder and its lock, resume, the metrics log, ``final/``.
It knows nothing about any particular loss: it trains the objective `build_recipe` built."""

from __future__ import annotations

import os
import random
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from losscraft import distributed
from losscraft.core import WeightedObjective
from losscraft.errors import LosscraftError
from losscraft.plugins.registry import Registry, get_registry
from losscraft.recipe.instantiate import BuiltRecipe, build_recipe
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.runtime.device import resolve_device
from losscraft.trainer import run_folder
from losscraft.trainer.fingerprint import normalised_recipe
from losscraft.trainer.metrics_log import MetricsLog, NullMetricsLog
from losscraft.trainer.model_setup import adapter_experts, load_expert, load_saved
from losscraft.trainer.resume import ResumePoint, announce, find_resume_point
from losscraft.trainer.run_lock import RunLock
from losscraft.trainer.stage import StageRun


@dataclass
class RunResult:
    """Where a run wrote things, and whether it finished or stopped early."""

    output_dir: Path
    final_model: Path | None
    stage_models: dict[str, Path] = field(default_factory=dict)
    metrics: Path | None = None
    stopped_early: bool = False
    last_metrics: dict[str, dict] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Runs a recipe's stages.

    Args:
        recipe: a parsed recipe.
        registry: the plugin registry (default: the process-wide one).
        console: where progress and notices go.
        stop_after: stop (with a checkpoint) after this many optimizer steps of this invocation
            — used to test resume; a normal run leaves it ``None``.
        overwrite: delete an existing output folder instead of refusing to start.
        built: the recipe's components from `losscraft.recipe.instantiate.build_recipe` (default:
            built from ``recipe`` and ``registry`` when the run starts).
        force_recipe: resume even when the checkpoint or the run folder lacks the recipe the
            run was trained with (so the recipe as given cannot be compared with it).
    """

    def __init__(self, recipe: Recipe, *, registry: Registry | None = None,
                 console: Console | None = None, stop_after: int | None = None,
                 overwrite: bool = False, show_progress: bool = True,
                 built: BuiltRecipe | None = None, force_recipe: bool = False):
        self.recipe = recipe
        self.registry = registry or get_registry()
        self.built = built
        self.console = console or Console(stderr=True)
        self.stop_after = stop_after
        self.overwrite = overwrite
        self.force_recipe = force_recipe
        self._lock: RunLock | None = None
        self.show_progress = show_progress
        self.out = Path(recipe.run.output_dir)
        # Under torchrun / accelerate: join the process group; rank 0 alone prints and writes.
        self.parallel, self.device = distributed.setup(resolve_device(recipe.run.device))
        if not self.parallel.is_main:
            self.console, self.show_progress = Console(quiet=True), False
        self.autocast_dtype = torch.bfloat16 if recipe.run.precision == "bf16" else None
        self.experts: dict[str, torch.nn.Module] = {}
        self.adapter_experts = adapter_experts(recipe)  # expert name -> the stage training it
        self.steps_this_call = 0
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()

    # ----------------------------------------------------------------- public
    def run(self, *, resume: bool = False) -> RunResult:
        """Train every stage (``resume``: from the last verified checkpoint), holding the run
        folder's lock throughout."""
        if run_folder.outside_working_dir(self.out):
            self.console.print(f"[yellow]note:[/] output folder {self.out.resolve()} is outside "
                               f"the working directory {Path.cwd()}", highlight=False)
        run_folder.check_output_dir(self.out)
        if resume and not run_folder.holds_run(self.out):
            raise LosscraftError(f"--resume: nothing to resume in {self.out}")
        if self.built is None:  # every component, before the output folder is touched
            self.built = build_recipe(self.recipe, self.registry)
        self._lock = RunLock(self.out) if self.parallel.is_main else None
        with self._lock or nullcontext():
            return self._run_locked(resume)

    def path(self, *parts: str) -> Path:
        """``out / parts...``, checked to stay inside the run folder."""
        path = self.out.joinpath(*parts)
        if self._lock is not None:
            self._lock.verify()  # the folder is still the one this run locked
        run_folder.inside(self.out, path)
        return path

    # ----------------------------------------------------------------- the run
    def _run_locked(self, resume: bool) -> RunResult:
        point = self._start(resume)
        metrics = (MetricsLog if self.parallel.is_main else NullMetricsLog)(
            self.out / "metrics.jsonl")
        metrics.truncate_after(point.state.global_step if point else 0)  # drop steps not kept
        if point is not None:
            metrics.check_rows(point.state.global_step, point.log_every, self.console)
        if point is not None and point.fallback is not None:
            metrics.write({"step": point.state.global_step, "event": "checkpoint_fallback",
                           **point.fallback})
        result = RunResult(self.out, None, metrics=metrics.path)
        try:
            if not self._train_stages(point, metrics, result):
                result.stopped_early = True
                return result
        finally:
            metrics.close()
        if self.parallel.is_main:  # rank 0 writes final/ and run.json
            self._finish(result)
        return result

    def _start(self, resume: bool) -> ResumePoint | None:
        """The run folder made ready (rank 0), threads and seeds set, the checkpoint to resume
        from found."""
        run = self.recipe.run
        self.normalised = normalised_recipe(self.recipe)
        distributed.run_on_main(lambda: run_folder.prepare(
            self.out, recipe_raw=self.recipe.raw, resume=resume, overwrite=self.overwrite,
            console=self.console))
        if run.threads:
            torch.set_num_threads(min(run.threads, os.cpu_count() or 1))
        seed_everything(run.seed)
        if not resume:
            return None
        point = find_resume_point(self.path("checkpoints"), self.recipe, self.normalised,
                                  self.console, force_recipe=self.force_recipe)
        if self.parallel.is_main:
            run_folder.record_recipe(self.out, self.recipe.raw, "resume", point.changes)
        announce(point, self.console, self.parallel.world_size)
        return point

    def _train_stages(self, point: ResumePoint | None, metrics, result: RunResult) -> bool:
        """Every stage not finished before ``point``; False when one stopped early."""
        base = self.built.model.load(device=self.device)
        self.tokenizer = base.tokenizer
        self._preload_experts()
        model, global_step = base.model, point.state.global_step if point else 0
        for index, stage in enumerate(self.recipe.stages):
            if point is not None and point.finished(index):
                result.stage_models[stage.name] = self.path("stages", stage.name, "model")
                continue
            if index > 0:
                model = self._stage_start_model(index)
            here = point if point is not None and point.state.stage_index == index else None
            global_step, stopped = self._run_stage(index, stage, model, global_step, metrics,
                                                   here, result)
            model = None
            if stopped:
                return False
            result.stage_models[stage.name] = self.path("stages", stage.name, "model")
        return True

    def _stage_start_model(self, index: int) -> torch.nn.Module:
        """The model stage ``index`` starts from: the base model (``init = "base"``) or the
        previous stage's, always from disk so a resumed run sees the same model."""
        if self.recipe.stages[index].init == "base":
            return self.built.model.load(device=self.device).model
        previous = self.path("stages", self.recipe.stages[index - 1].name, "model")
        return load_saved(previous, self.device).model  # verified against its manifest

    def _finish(self, result: RunResult) -> None:
        """``final/`` from the last stage's model, stage models not kept removed, ``run.json``."""
        last = result.stage_models[self.recipe.stages[-1].name]
        result.final_model = run_folder.install_final(self.out, last)
        for stage in self.recipe.stages:
            if not stage.keep_model and stage is not self.recipe.stages[-1]:
                run_folder.remove_inside(self.out, result.stage_models.pop(stage.name))
        run_folder.write_run_info(self.out, {
            "recipe": self.recipe.path, "name": self.recipe.run.name, "device": self.device,
            "final_model": str(result.final_model),
            "stage_models": {k: str(v) for k, v in result.stage_models.items()},
            "last_metrics": result.last_metrics})

    # ----------------------------------------------------------------- per-stage hooks
    # (a subclass may wrap them, e.g. to record what a stage trained on)
    def _run_stage(self, index: int, stage: StageSpec, model: torch.nn.Module, global_step: int,
                   metrics, resume: ResumePoint | None, result: RunResult) -> tuple[int, bool]:
        """Train stage ``index`` (see `StageRun`); returns the step count after it and whether
        it stopped early."""
        return StageRun(self, index, stage, model, global_step, metrics, resume).run(result)

    def _objective(self, stage: StageSpec) -> WeightedObjective:
        """The stage's objective as built by `build_recipe` (terms and penalties)."""
        return self.built.stage(stage.name).objective

    def _expert(self, name: str) -> torch.nn.Module:
        """Expert ``name``, loaded (frozen, vocabulary checked) on first use."""
        if name not in self.experts:
            self.experts[name] = load_expert(name, self.recipe, self.registry, self.device,
                                             self.tokenizer, self.out,
                                             provider=self.built.experts.get(name))
        return self.experts[name]

    def _preload_experts(self) -> None:
        """Load experts that do not come from a stage before any training, so a vocabulary
        mismatch stops the run before the first step rather than after earlier stages."""
        for name in self.recipe.experts:
            if name not in self.recipe.expert_from_stage:
                self._expert(name)

    def _load_experts(self, objective: WeightedObjective) -> dict[str, torch.nn.Module]:
        """Full-model experts (loaded once); expert adapters are attached to each policy."""
        return {name: self._expert(name) for name in objective.experts
                if name not in self.adapter_experts}

    # ----------------------------------------------------------------- stage preparation
    def _augment(self, stage, examples, model):
        """Stage-level example preparation: RoTs in prompts, replayed own replies and mined
        negatives."""
        if stage.replay is not None and stage.replay.enabled:
            from losscraft.trainer.prepare.replay import CACHE_NAME, replay_examples
            examples = examples + replay_examples(
                model, self.tokenizer, self.recipe, stage, self.registry,
                self.path("stages", stage.name, CACHE_NAME),
                sources=self.built.stage(stage.name).replay_sources, console=self.console,
                show_progress=self.show_progress)
        if stage.rots is not None and stage.rots.enabled:
            from losscraft.trainer.prepare.augment import add_rots
            examples = add_rots(examples, stage, self.built.rot_generator, file=self.recipe.path)
        if stage.mining is not None and stage.mining.enabled:
            from losscraft.trainer.prepare.mining import CACHE_NAME, mine_negatives
            cache = self.path("stages", stage.name, CACHE_NAME)
            examples = mine_negatives(examples, model, self.tokenizer, self.recipe, stage,
                                      self.built.stage(stage.name).mining_scorer, cache,
                                      console=self.console,
                                      show_progress=self.show_progress)
        return examples
