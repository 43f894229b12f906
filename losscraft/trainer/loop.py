"""The training loop: stages, optimizer and schedule, gradient accumulation, clipping, precision,
seeding, checkpoints and resume, metrics log and progress display. It knows nothing about any
particular loss: it builds the objective from the recipe's terms and calls it."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from transformers import get_scheduler

from losscraft.core import StepContext, Term, WeightedObjective
from losscraft.data.collate import DialogCollator
from losscraft.device import resolve_device
from losscraft.errors import LosscraftError
from losscraft.plugins import Registry, get_registry
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.recipe.validate import build_component
from losscraft.trainer import checkpoint as ckpt
from losscraft.trainer.metrics_log import MetricsLog, StepAccumulator
from losscraft.trainer.model_setup import (apply_lora, load_base, load_expert, load_saved,
                                           merge_lora)
from losscraft.trainer.progress import training_progress
from losscraft.trainer.stage_data import MicroBatchOrder, load_examples, total_steps

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """Where a run wrote things, and whether it finished or stopped early."""

    output_dir: Path
    final_model: Path | None
    stage_models: dict[str, Path] = field(default_factory=dict)
    metrics: Path | None = None
    stopped_early: bool = False
    last_metrics: dict[str, dict] = field(default_factory=dict)


def _link_or_copy(src: str, dst: str) -> None:
    """Hard-link (no second copy of the weights on disk) where the filesystem allows."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


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
    """

    def __init__(self, recipe: Recipe, *, registry: Registry | None = None,
                 console: Console | None = None, stop_after: int | None = None,
                 overwrite: bool = False, show_progress: bool = True):
        self.recipe = recipe
        self.registry = registry or get_registry()
        self.console = console or Console(stderr=True)
        self.stop_after = stop_after
        self.overwrite = overwrite
        self.show_progress = show_progress
        self.out = Path(recipe.run.output_dir)
        self.device = resolve_device(recipe.run.device)
        self.autocast_dtype = torch.bfloat16 if recipe.run.precision == "bf16" else None
        self.experts: dict[str, torch.nn.Module] = {}
        self._steps_this_call = 0
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()

    # ----------------------------------------------------------------- public
    def run(self, *, resume: bool = False) -> RunResult:
        run = self.recipe.run
        self._prepare_output(resume)
        if run.threads:
            torch.set_num_threads(run.threads)
        seed_everything(run.seed)
        state = self._resume_state() if resume else None
        metrics = MetricsLog(self.out / "metrics.jsonl")
        metrics.truncate_after(state.global_step if state else 0)  # drop steps not kept
        result = RunResult(self.out, None, metrics=metrics.path)
        base = load_base(self.recipe, self.registry, self.device)
        self.tokenizer = base.tokenizer
        self._preload_experts()
        model, global_step = base.model, state.global_step if state else 0
        try:
            for index, stage in enumerate(self.recipe.stages):
                stage_dir = self.out / "stages" / stage.name / "model"
                if state is not None and (index < state.stage_index or
                                          (index == state.stage_index and state.stage_done)):
                    result.stage_models[stage.name] = stage_dir
                    continue
                if stage.init == "base" and index > 0:
                    model = load_base(self.recipe, self.registry, self.device).model
                elif index > 0:  # always from disk, so a resumed run sees the same model
                    model = load_saved(self.out / "stages" / self.recipe.stages[index - 1].name
                                       / "model", self.device).model
                resume_here = state if state is not None and state.stage_index == index else None
                global_step, stopped = self._run_stage(
                    index, stage, model, global_step, metrics, resume_here, result)
                model = None
                if stopped:
                    result.stopped_early = True
                    return result
                result.stage_models[stage.name] = stage_dir
        finally:
            metrics.close()
        final = self.out / "final"
        last = result.stage_models[self.recipe.stages[-1].name]
        shutil.rmtree(final, ignore_errors=True)
        shutil.copytree(last, final, copy_function=_link_or_copy)
        result.final_model = final
        for stage in self.recipe.stages:
            if not stage.keep_model and stage is not self.recipe.stages[-1]:
                shutil.rmtree(result.stage_models.pop(stage.name), ignore_errors=True)
        self._write_run_info(result)
        return result

    # ----------------------------------------------------------------- setup
    def _prepare_output(self, resume: bool) -> None:
        existing = any((self.out / name).exists() for name in ("checkpoints", "stages", "final"))
        if existing and not resume:
            if not self.overwrite:
                raise LosscraftError(
                    f"output folder {self.out} already holds a run; pass --resume to continue "
                    "it, --overwrite to replace it, or --set run.output_dir=... for a new one")
            shutil.rmtree(self.out)
        if resume and not existing:
            raise LosscraftError(f"--resume: nothing to resume in {self.out}")
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "recipe.json").write_text(json.dumps(self.recipe.raw, indent=2, default=str))

    def _resume_state(self) -> ckpt.TrainState:
        latest = ckpt.latest_checkpoint(self.out / "checkpoints")
        if latest is None:
            raise LosscraftError(f"--resume: no checkpoint in {self.out / 'checkpoints'}")
        state = ckpt.read_state(latest)
        self._resume_dir = latest
        self.console.print(f"[bold]resuming[/] from {latest} (stage {state.stage_name}, "
                           f"step {state.stage_step})")
        return state

    def _objective(self, stage: StageSpec) -> WeightedObjective:
        terms = []
        for spec in stage.terms:
            loss = build_component("objective", spec, self.recipe.path, self.registry)
            terms.append(Term(spec.name, loss, spec.weight))
            if spec.penalty is not None and spec.penalty.weight:
                from losscraft.core.penalty import GradientNormPenalty
                penalty = GradientNormPenalty(loss, method=spec.penalty.method,
                                              radius=spec.penalty.radius)
                terms.append(Term(f"{spec.name}_grad_penalty", penalty, spec.penalty.weight))
        return WeightedObjective(terms)

    def _expert(self, name: str) -> torch.nn.Module:
        """Expert ``name``, loaded (frozen, vocabulary checked) on first use."""
        if name not in self.experts:
            self.experts[name] = load_expert(name, self.recipe, self.registry, self.device,
                                             self.tokenizer, self.out)
        return self.experts[name]

    def _preload_experts(self) -> None:
        """Load experts that do not come from a stage before any training, so a vocabulary
        mismatch stops the run before the first step rather than after earlier stages."""
        for name in self.recipe.experts:
            if name not in self.recipe.expert_from_stage:
                self._expert(name)

    def _load_experts(self, objective: WeightedObjective) -> dict[str, torch.nn.Module]:
        return {name: self._expert(name) for name in objective.experts}

    # ----------------------------------------------------------------- one stage
    def _run_stage(self, index, stage, model, global_step, metrics, resume_state, result):
        objective = self._objective(stage)
        experts = self._load_experts(objective)
        model = apply_lora(model, self.recipe.lora).to(self.device)
        model.train()
        examples = load_examples(stage, self.recipe.path, self.registry)
        examples = self._augment(stage, examples, model)
        requires = objective.requires
        collator = DialogCollator(
            self.tokenizer, max_context_tokens=stage.max_context_tokens,
            max_response_tokens=stage.max_response_tokens,
            pack_negatives="negatives" in requires, max_negatives=stage.max_negatives,
            system=stage.system_prompt or None,
            rot_placement=stage.rots.placement if stage.rots and stage.rots.enabled else "none")
        order = MicroBatchOrder(len(examples), stage.batch_size,
                                seed=self.recipe.run.seed + index, shuffle=stage.shuffle)
        steps = total_steps(stage, len(examples))
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise LosscraftError(f"stage '{stage.name}': the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=stage.lr, weight_decay=stage.weight_decay)
        warmup = stage.warmup_steps or int(stage.warmup_ratio * steps)
        scheduler = get_scheduler(stage.schedule, optimizer, num_warmup_steps=warmup,
                                  num_training_steps=steps)
        generator = torch.Generator(device=self.device).manual_seed(self.recipe.run.seed + index)
        state = ckpt.TrainState(stage_index=index, stage_name=stage.name, global_step=global_step)
        if resume_state is not None:
            state = ckpt.load_checkpoint(self._resume_dir, model=model, optimizer=optimizer,
                                         scheduler=scheduler, generator=generator)
        summed = {t.name for t in objective.terms} | {"loss"}
        need_hidden = "hidden_states" in requires
        batches = order.iterate(state.data_position)
        with training_progress(self.console, disable=not self.show_progress) as progress:
            task = progress.add_task(stage.name, total=steps, completed=state.stage_step,
                                     loss="-", tps="-")
            while state.stage_step < steps:
                if self.stop_after is not None and self._steps_this_call >= self.stop_after:
                    self._checkpoint(stage, state, model, optimizer, scheduler, generator)
                    return state.global_step, True
                started = time.perf_counter()
                micro = [collator([examples[i] for i in next(batches)]).to(self.device)
                         for _ in range(stage.grad_accum)]
                acc = StepAccumulator(summed)
                try:
                    for batch in micro:
                        ctx = StepContext(model, batch, step_batches=micro, experts=experts,
                                          tokenizer=self.tokenizer,
                                          need_hidden_states=need_hidden, step=state.global_step,
                                          generator=generator, autocast_dtype=self.autocast_dtype)
                        out = objective(ctx)
                        out.value.backward()
                        acc.add(out.metrics)
                except KeyboardInterrupt:
                    optimizer.zero_grad(set_to_none=True)
                    self._checkpoint(stage, state, model, optimizer, scheduler, generator)
                    raise LosscraftError(f"interrupted; checkpoint saved in {self.out}: "
                                         "continue with --resume") from None
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    params, stage.max_grad_norm if stage.max_grad_norm > 0 else float("inf"))
                lr = scheduler.get_last_lr()[0]  # the rate this step used
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.stage_step += 1
                state.global_step += 1
                state.data_position += stage.grad_accum
                self._steps_this_call += 1
                elapsed = time.perf_counter() - started
                tokens = sum(int(b.lengths.sum()) for b in micro)
                record = {"step": state.global_step, "stage": stage.name,
                          "stage_step": state.stage_step, "epoch": order.epoch_of(state.data_position - 1),
                          "lr": lr, "grad_norm": float(grad_norm),
                          "tokens": tokens, "tokens_per_s": tokens / max(elapsed, 1e-9),
                          "step_seconds": elapsed, **acc.result()}
                if state.stage_step % self.recipe.run.log_every == 0 or state.stage_step == steps:
                    metrics.write(record)
                result.last_metrics[stage.name] = record
                progress.update(task, advance=1, loss=f"{record['loss']:.4f}",
                                tps=f"{record['tokens_per_s']:.0f}")
                if stage.checkpoint_every and state.stage_step % stage.checkpoint_every == 0 \
                        and state.stage_step < steps:
                    self._checkpoint(stage, state, model, optimizer, scheduler, generator)
        model = merge_lora(model)
        self._save_model(model, self.out / "stages" / stage.name / "model")
        state.stage_done = True
        self._stage_end_marker(stage, state)
        return state.global_step, False

    # ----------------------------------------------------------------- hooks and saving
    def _augment(self, stage, examples, model):
        """Stage-level example preparation: RoTs in prompts and mined negatives."""
        if stage.rots is not None and stage.rots.enabled:
            from losscraft.data.augment import add_rots
            examples = add_rots(examples, self.recipe, stage, self.registry)
        if stage.mining is not None and stage.mining.enabled:
            from losscraft.data.mining import mine_negatives
            cache = self.out / "stages" / stage.name / "mined_negatives.jsonl"
            examples = mine_negatives(examples, model, self.tokenizer, self.recipe, stage,
                                      self.registry, cache, console=self.console,
                                      show_progress=self.show_progress)
        return examples

    def _checkpoint(self, stage, state, model, optimizer, scheduler, generator) -> None:
        directory = self.out / "checkpoints" / f"step-{state.global_step:06d}"
        ckpt.save_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                             state=state, generator=generator)

    def _stage_end_marker(self, stage: StageSpec, state: ckpt.TrainState) -> None:
        directory = self.out / "checkpoints" / f"stage-{state.stage_index:02d}-{stage.name}-end"
        ckpt.save_marker(directory, state)

    def _save_model(self, model: torch.nn.Module, folder: Path) -> None:
        """``save_pretrained`` weights (safetensors) and tokenizer, written atomically."""
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)

    def _write_run_info(self, result: RunResult) -> None:
        import losscraft

        info = {"recipe": self.recipe.path, "name": self.recipe.run.name,
                "losscraft": losscraft.__version__, "torch": torch.__version__,
                "device": self.device, "final_model": str(result.final_model),
                "stage_models": {k: str(v) for k, v in result.stage_models.items()},
                "last_metrics": result.last_metrics}
        (self.out / "run.json").write_text(json.dumps(info, indent=2, default=str))
