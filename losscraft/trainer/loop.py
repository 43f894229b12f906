"""The training loop: stages, optimizer and schedule, gradient accumulation, clipping, precision,
seeding, checkpoints and resume, metrics log and progress display. It knows nothing about any
particular loss: it builds the objective from the recipe's terms and calls it."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from transformers import get_scheduler

from losscraft import distributed

from losscraft.distributed import sharding
from losscraft.core import WeightedObjective, accumulate_gradients
from losscraft.core.loss import prepare_loss
from losscraft.data.collate import DialogCollator
from losscraft.runtime.device import resolve_device
from losscraft.errors import (CheckpointError, LossValueError, LosscraftError, NonFiniteError,
                              RecipeChangedError)
from losscraft.plugins.registry import Registry, get_registry
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.recipe.instantiate import BuiltRecipe, build_recipe
from losscraft.trainer import checkpoint as ckpt
from losscraft.trainer import run_folder
from losscraft.trainer.finite import RecordingObjective, first_nonfinite
from losscraft.trainer.fingerprint import check_resume_changes, normalised_recipe
from losscraft.trainer.metrics_log import MetricsLog, NullMetricsLog
from losscraft.models.adapters import (ADAPTER_DIR, AdapterSnapshot, attach_adapter_experts,
                                       detach_adapter_experts)
from losscraft.trainer.model_setup import (adapter_experts, adapter_folder,
                                           adapter_only_stages, apply_lora,
                                           check_adapter_policy_stage, load_expert,
                                           load_saved, merge_lora, prepare_policy)
from losscraft.trainer.progress import training_progress
from losscraft.trainer.run_lock import RunLock
from losscraft.trainer.prepare.stage_data import MicroBatchOrder, load_examples, total_steps

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
        built: the recipe's components from `losscraft.recipe.instantiate.build_recipe` (default:
            built from ``recipe`` and ``registry`` when the run starts).
    """

    def __init__(self, recipe: Recipe, *, registry: Registry | None = None,
                 console: Console | None = None, stop_after: int | None = None,
                 overwrite: bool = False, show_progress: bool = True,
                 built: BuiltRecipe | None = None):
        self.recipe = recipe
        self.registry = registry or get_registry()
        self.built = built
        self.console = console or Console(stderr=True)
        self.stop_after = stop_after
        self.overwrite = overwrite
        self.show_progress = show_progress
        self.out = Path(recipe.run.output_dir)
        # Under torchrun / accelerate: join the process group; rank 0 alone prints and writes.
        self.parallel, self.device = distributed.setup(resolve_device(recipe.run.device))
        if not self.parallel.is_main:
            self.console, self.show_progress = Console(quiet=True), False
        self.autocast_dtype = torch.bfloat16 if recipe.run.precision == "bf16" else None
        self.experts: dict[str, torch.nn.Module] = {}
        self._adapter_experts = adapter_experts(recipe)  # expert name -> the stage training it
        self._steps_this_call = 0
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()

    # ----------------------------------------------------------------- public
    def run(self, *, resume: bool = False) -> RunResult:
        """Train every stage (``resume``: from the last verified checkpoint), holding the run
        folder's lock throughout."""
        if run_folder.outside_working_dir(self.out):
            self.console.print(f"[yellow]note:[/] output folder {self.out.resolve()} is outside "
                               f"the working directory {Path.cwd()}", highlight=False)
        if resume and not run_folder.holds_run(self.out):
            raise LosscraftError(f"--resume: nothing to resume in {self.out}")
        if self.built is None:  # every component, before the output folder is touched
            self.built = build_recipe(self.recipe, self.registry)
        with RunLock(self.out) if self.parallel.is_main else nullcontext():
            return self._run_locked(resume)

    def _run_locked(self, resume: bool) -> RunResult:
        run = self.recipe.run
        self._prepare_output(resume)
        if run.threads:
            torch.set_num_threads(run.threads)
        seed_everything(run.seed)
        state = self._resume_state() if resume else None
        metrics = (MetricsLog if self.parallel.is_main else NullMetricsLog)(
            self.out / "metrics.jsonl")
        metrics.truncate_after(state.global_step if state else 0)  # drop steps not kept
        if state is not None and self._fallback is not None:
            metrics.write({"step": state.global_step, "event": "checkpoint_fallback",
                           **self._fallback})
        result = RunResult(self.out, None, metrics=metrics.path)
        base = self.built.model.load(device=self.device)
        self.tokenizer = base.tokenizer
        self._preload_experts()
        model, global_step = base.model, state.global_step if state else 0
        try:
            for index, stage in enumerate(self.recipe.stages):
                stage_dir = self._path("stages", stage.name, "model")
                if state is not None and (index < state.stage_index or
                                          (index == state.stage_index and state.stage_done)):
                    result.stage_models[stage.name] = stage_dir
                    continue
                if stage.init == "base" and index > 0:
                    model = self.built.model.load(device=self.device).model
                elif index > 0:  # always from disk, so a resumed run sees the same model
                    previous = self._path("stages", self.recipe.stages[index - 1].name, "model")
                    if (previous / ckpt.MANIFEST).is_file():
                        ckpt.verify_manifest(previous)
                    model = load_saved(previous, self.device).model
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
        if not self.parallel.is_main:  # rank 0 writes final/ and run.json
            return result
        final = self._path("final")
        last = result.stage_models[self.recipe.stages[-1].name]
        tmp = self._path("final.tmp")
        run_folder.remove_inside(self.out, tmp)
        shutil.copytree(last, tmp, copy_function=_link_or_copy)
        (tmp / ckpt.MANIFEST).unlink(missing_ok=True)  # a hard link to the stage's manifest
        ckpt.write_manifest(tmp)
        ckpt.install_folder(tmp, final)
        result.final_model = final
        for stage in self.recipe.stages:
            if not stage.keep_model and stage is not self.recipe.stages[-1]:
                run_folder.remove_inside(self.out, result.stage_models.pop(stage.name))
        self._write_run_info(result)
        return result

    # ----------------------------------------------------------------- setup
    def _path(self, *parts: str) -> Path:
        """``out / parts...``, checked to stay inside the run folder."""
        path = self.out.joinpath(*parts)
        run_folder.inside(self.out, path)
        return path

    def _prepare_output(self, resume: bool) -> None:
        self._normalised = normalised_recipe(self.recipe)
        self._fallback: dict | None = None
        self._resume_changes: dict = {}
        distributed.run_on_main(lambda: self._prepare_folder(resume))

    def _prepare_folder(self, resume: bool) -> None:
        existing = run_folder.holds_run(self.out)
        if existing and not resume:
            if not self.overwrite:
                raise LosscraftError(
                    f"output folder {self.out} already holds a run; pass --resume to continue "
                    "it, --overwrite to replace it, or --set run.output_dir=... for a new one")
            kept = run_folder.remove_owned(self.out)
            if kept:
                self.console.print(f"--overwrite: kept {len(kept)} entries that are not part of "
                                   f"the run: {', '.join(kept[:8])}", highlight=False)
        self.out.mkdir(parents=True, exist_ok=True)
        run_folder.write_marker(self.out)
        if not resume:
            (self.out / "recipe.json").write_text(json.dumps(self.recipe.raw, indent=2,
                                                             default=str))
            self._record_recipe("start", {})

    def _record_recipe(self, mode: str, changes: dict) -> None:
        """Append this invocation's recipe (and the changes a resume applied) to
        ``recipe_history.jsonl``; ``recipe.json`` stays the recipe the run started with."""
        if not self.parallel.is_main:
            return
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "mode": mode,
                 "changes": {k: list(v) for k, v in changes.items()}, "recipe": self.recipe.raw}
        with open(self.out / "recipe_history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")

    def _resume_state(self) -> ckpt.TrainState:
        found = ckpt.find_resume_checkpoint(self._path("checkpoints"))
        if found is None:
            raise LosscraftError(f"--resume: no checkpoint in {self.out / 'checkpoints'}")
        latest, state, problems = found
        for problem in problems:
            self.console.print(f"[bold yellow]checkpoint rejected:[/] {problem}", highlight=False)
        if problems:
            self.console.print(f"[bold yellow]falling back[/] to the previous good checkpoint "
                               f"{latest.name}", highlight=False)
            self._fallback = {"used": latest.name, "rejected": problems}
        stages = self.recipe.stages
        if state.stage_index >= len(stages) or stages[state.stage_index].name != state.stage_name:
            raise RecipeChangedError(
                f"--resume: checkpoint {latest} is in stage '{state.stage_name}' "
                f"(#{state.stage_index}), which is not that stage of the recipe "
                f"({', '.join(s.name for s in stages)})")
        finished = {s.name for i, s in enumerate(stages)
                    if i < state.stage_index or (i == state.stage_index and state.stage_done)}
        changes = check_resume_changes(ckpt.read_recipe(latest), self._normalised,
                                       finished_stages=finished)
        stage = stages[state.stage_index]
        if state.data_position != state.stage_step * stage.grad_accum:
            raise CheckpointError(f"{latest}/state.json: data_position {state.data_position} does "
                                  f"not match stage_step {state.stage_step} × grad_accum "
                                  f"{stage.grad_accum}")
        for key, (old, new) in changes.items():
            self.console.print(f"resume: applying changed {key}: {old!r} -> {new!r}",
                               highlight=False)
        self._resume_changes = changes
        self._record_recipe("resume", changes)
        self._resume_dir = latest
        self.console.print(f"[bold]resuming[/] from {latest} (stage {state.stage_name}, "
                           f"step {state.stage_step})")
        if state.world_size != self.parallel.world_size:
            self.console.print(distributed.resume_note(state.world_size), highlight=False)
        return state

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
                if name not in self._adapter_experts}

    # ----------------------------------------------------------------- one stage
    def _run_stage(self, index, stage, model, global_step, metrics, resume_state, result):
        objective = RecordingObjective(self._objective(stage))
        experts = self._load_experts(objective.objective)
        model = apply_lora(model, self.recipe.lora).to(self.device)
        prepare_policy(model, self.recipe, stage)  # fp32 trainable weights; checkpointing
        prepare_loss(objective, model)  # e.g. the exact penalty's layer wrappers
        adapters = [n for n in objective.objective.experts if n in self._adapter_experts]
        check_adapter_policy_stage(self.recipe, index, adapters)
        experts.update(attach_adapter_experts(
            model, {n: adapter_folder(self.out, self._adapter_experts[n]) for n in adapters}))
        sharded = sharding.requested(self.recipe.run.sharding)
        if sharded:  # FSDP: each rank holds 1/N of the weights (before the optimizer is built)
            sharding.check_stage(self.recipe, stage, adapters)
            sharding.shard_model(model)
            self.console.print(f"stage '{stage.name}': FSDP, the policy sharded over "
                               f"{self.parallel.world_size} processes", highlight=False)
        model.train()
        examples = load_examples(stage, self.recipe.path, self.registry,
                                 sources=self.built.stage(stage.name).data_sources)
        # mining / RoTs / replay once, on rank 0; every rank receives the examples
        examples = distributed.run_on_main(lambda: self._augment(stage, examples, model))
        requires = objective.requires
        collator = DialogCollator(
            self.tokenizer, max_context_tokens=stage.max_context_tokens,
            max_response_tokens=stage.max_response_tokens,
            pack_negatives="negatives" in requires, max_negatives=stage.max_negatives,
            system=stage.system_prompt or None,
            rot_placement=stage.rots.placement if stage.rots and stage.rots.enabled else "none")
        lengths = ([collator.row_length(e) for e in examples] if stage.group_by_length
                   else None)
        order = MicroBatchOrder(len(examples), stage.batch_size,
                                seed=self.recipe.run.seed + index, shuffle=stage.shuffle,
                                lengths=lengths, group_by_length=stage.group_by_length)
        steps = total_steps(stage, len(examples))
        distributed.check_shardable(len(examples), stage.batch_size, file=self.recipe.path,
                                    key=f"{stage.key}.batch_size")
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
                                         scheduler=scheduler, generator=generator,
                                         rank=self.parallel.rank)
            self._apply_length_change(stage, state, steps, optimizer, scheduler)
        # DDP (None in one process or under FSDP, whose module is its own wrapper)
        forward_model = None if sharded else distributed.wrap_model(model, self.device)
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
                micro = [collator([examples[i] for i in distributed.shard(next(batches))])
                         .to(self.device) for _ in range(stage.grad_accum)]
                objective.reset()
                try:  # step-level terms (the gradient penalty) share state across `micro`
                    step_metrics = accumulate_gradients(
                        objective, model, micro, experts=experts, tokenizer=self.tokenizer,
                        need_hidden_states=need_hidden, step=state.global_step,
                        generator=generator, autocast_dtype=self.autocast_dtype,
                        forward_model=forward_model)
                except LossValueError as exc:  # a term returned something unusable
                    raise exc.at(stage=stage.name, step=state.global_step + 1) from None
                except KeyboardInterrupt:
                    optimizer.zero_grad(set_to_none=True)
                    self._checkpoint(stage, state, model, optimizer, scheduler, generator)
                    raise LosscraftError(f"interrupted; checkpoint saved in {self.out}: "
                                         "continue with --resume") from None
                grad_norm = sharding.full(torch.nn.utils.clip_grad_norm_(
                    params, stage.max_grad_norm if stage.max_grad_norm > 0 else float("inf")))
                lr = scheduler.get_last_lr()[0]  # the rate this step used
                problem = first_nonfinite(objective.calls, float(grad_norm))
                if distributed.any_rank(problem is not None) and problem is None:
                    problem = "a loss or term on another rank is non-finite"
                if problem is not None:  # before optimizer.step(): the weights stay good
                    optimizer.zero_grad(set_to_none=True)
                    self._nonfinite(problem, stage, state, metrics, objective, lr,
                                    float(grad_norm))
                    step_metrics = {**objective.summed(), "skipped": problem}
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.stage_step += 1
                state.global_step += 1
                state.data_position += stage.grad_accum
                self._steps_this_call += 1
                elapsed = time.perf_counter() - started
                tokens = int(distributed.all_reduce_sum(sum(int(b.lengths.sum()) for b in micro)))
                record = {"step": state.global_step, "stage": stage.name,
                          "stage_step": state.stage_step, "epoch": order.epoch_of(state.data_position - 1),
                          "lr": lr, "grad_norm": float(grad_norm),
                          "tokens": tokens, "tokens_per_s": tokens / max(elapsed, 1e-9),
                          "step_seconds": elapsed, **step_metrics}
                if state.stage_step % self.recipe.run.log_every == 0 or state.stage_step == steps:
                    metrics.write(record)
                result.last_metrics[stage.name] = record
                progress.update(task, advance=1, loss=f"{record.get('loss', math.nan):.4f}",
                                tps=f"{record['tokens_per_s']:.0f}")
                if stage.checkpoint_every and state.stage_step % stage.checkpoint_every == 0 \
                        and state.stage_step < steps:
                    self._checkpoint(stage, state, model, optimizer, scheduler, generator)
        detach_adapter_experts(model, adapters)
        adapter = (AdapterSnapshot(model) if stage.name in self._adapter_experts.values()
                   else None)  # an expert's adapter, kept beside (or instead of) the weights
        weights = stage.name not in adapter_only_stages(self.recipe)
        model = merge_lora(model) if weights else model
        self._save_model(model, self._path("stages", stage.name, "model"), adapter=adapter,
                         weights=weights)
        state.stage_done = True
        self._stage_end_marker(stage, state)
        distributed.barrier()  # the next stage (every rank) loads what rank 0 saved
        return state.global_step, False

    # ----------------------------------------------------------------- hooks and saving
    def _augment(self, stage, examples, model):
        """Stage-level example preparation: RoTs in prompts, replayed own replies and mined
        negatives."""
        if stage.replay is not None and stage.replay.enabled:
            from losscraft.trainer.prepare.replay import CACHE_NAME, replay_examples
            examples = examples + replay_examples(
                model, self.tokenizer, self.recipe, stage, self.registry,
                self._path("stages", stage.name, CACHE_NAME),
                sources=self.built.stage(stage.name).replay_sources, console=self.console,
                show_progress=self.show_progress)
        if stage.rots is not None and stage.rots.enabled:
            from losscraft.trainer.prepare.augment import add_rots
            examples = add_rots(examples, stage, self.built.rot_generator, file=self.recipe.path)
        if stage.mining is not None and stage.mining.enabled:
            from losscraft.trainer.prepare.mining import CACHE_NAME, mine_negatives
            cache = self._path("stages", stage.name, CACHE_NAME)
            examples = mine_negatives(examples, model, self.tokenizer, self.recipe, stage,
                                      self.built.stage(stage.name).mining_scorer, cache,
                                      console=self.console,
                                      show_progress=self.show_progress)
        return examples

    def _checkpoint(self, stage, state, model, optimizer, scheduler, generator) -> None:
        # every rank's RNG state (its dropout and sampling streams) goes into rank 0's checkpoint
        rank_rngs = distributed.gather_objects(ckpt.rng_state(generator))
        state.world_size = self.parallel.world_size
        full_state = None  # FSDP: gathered (every rank takes part) into rank 0's full state
        if sharding.is_sharded(model):
            full_state = (sharding.full_model_state(model, trainable_only=True),
                          sharding.full_optimizer_state(model, optimizer))
        if not self.parallel.is_main:
            return
        directory = self._path("checkpoints", f"step-{state.global_step:06d}")
        ckpt.save_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                             state=state, generator=generator, recipe=self._normalised,
                             rank_rngs=rank_rngs[1:], full_state=full_state)

    def _stage_end_marker(self, stage: StageSpec, state: ckpt.TrainState) -> None:
        state.world_size = self.parallel.world_size
        if not self.parallel.is_main:
            return
        directory = self._path("checkpoints", f"stage-{state.stage_index:02d}-{stage.name}-end")
        ckpt.save_marker(directory, state, recipe=self._normalised)

    def _save_model(self, model: torch.nn.Module, folder: Path,
                    adapter: AdapterSnapshot | None = None, weights: bool = True) -> None:
        """``save_pretrained`` weights (safetensors) and tokenizer, written atomically (by rank
        0 alone); ``adapter`` (an expert stage's LoRA adapter) goes into ``adapter/`` inside —
        alone, without the weights, when ``weights`` is false (an adapter-only expert stage)."""
        # FSDP: the full (unsharded) weights, gathered to rank 0 (every rank takes part)
        full = sharding.full_model_state(model) if sharding.is_sharded(model) else None
        if not self.parallel.is_main:
            return
        ckpt.check_finite_weights(full if full is not None else dict(model.state_dict()),
                                  f"model {folder}")
        tmp = folder.with_name(folder.name + ".tmp")
        run_folder.remove_inside(self.out, tmp)
        if weights:
            model.save_pretrained(tmp, safe_serialization=True,
                                  **({"state_dict": full} if full is not None else {}))
        else:
            tmp.mkdir(parents=True)
        self.tokenizer.save_pretrained(tmp)
        if adapter is not None:
            adapter.save(tmp / ADAPTER_DIR)
        ckpt.write_manifest(tmp)
        ckpt.install_folder(tmp, folder)

    def _write_run_info(self, result: RunResult) -> None:
        import losscraft

        info = {"recipe": self.recipe.path, "name": self.recipe.run.name,
                "losscraft": losscraft.__version__, "torch": torch.__version__,
                "device": self.device, "final_model": str(result.final_model),
                "stage_models": {k: str(v) for k, v in result.stage_models.items()},
                "last_metrics": result.last_metrics}
        (self.out / "run.json").write_text(json.dumps(info, indent=2, default=str))

    # ----------------------------------------------------------------- resume and guard helpers
    def _apply_length_change(self, stage, state, steps, optimizer, scheduler) -> None:
        """A resumed stage whose ``max_steps``/``epochs`` changed: check the checkpoint is not
        past the new end, and put the learning rate on the new schedule now (the restored
        optimizer would otherwise use the old schedule's rate for one step)."""
        if state.stage_step > steps:
            raise RecipeChangedError(
                f"--resume: the checkpoint is at step {state.stage_step} of stage "
                f"'{stage.name}', past its new length of {steps} steps")
        if not any(k in self._resume_changes for k in
                   (f"stages.{stage.name}.max_steps", f"stages.{stage.name}.epochs")):
            return
        lambdas = getattr(scheduler, "lr_lambdas", None)
        if lambdas is None:
            return
        rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas)]
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate
        scheduler._last_lr = rates

    def _nonfinite(self, problem, stage, state, metrics, objective, lr, grad_norm) -> None:
        """A non-finite step: log its record, then stop (default) or count a skip."""
        step = state.global_step + 1
        record = {"step": step, "stage": stage.name, "stage_step": state.stage_step + 1,
                  "lr": lr, "grad_norm": grad_norm, **objective.summed(), "nonfinite": problem}
        policy = self.recipe.run.on_nonfinite
        if policy == "skip" and state.skipped_steps < self.recipe.run.max_skipped_steps:
            state.skipped_steps += 1
            self.console.print(f"[yellow]step {step}, stage {stage.name}: {problem}; step "
                               f"skipped ({state.skipped_steps}/"
                               f"{self.recipe.run.max_skipped_steps})[/]", highlight=False)
            return
        metrics.write({**record, "stopped": True})
        latest = ckpt.find_resume_checkpoint(self.out / "checkpoints")
        where = f"; the last good checkpoint is {latest[0].name}" if latest else ""
        limit = (f" (more than run.max_skipped_steps = {self.recipe.run.max_skipped_steps} "
                 "skipped)" if policy == "skip" else "")
        raise NonFiniteError(f"step {step}, stage {stage.name}, {problem}{limit}: stopped before "
                             f"the optimizer step{where} (lower lr, enable clipping, or set "
                             "run.on_nonfinite = \"skip\")")
