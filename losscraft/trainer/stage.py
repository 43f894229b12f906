"""One stage of a run, in phases as torchtune's recipes are: set up the model (LoRA, experts, the
step engine, sharding), the data (examples, stage preparation, collator, batch order), the
optimizer and schedule (restored on resume), then train step by step, then save the stage's
model. `losscraft.trainer.loop.Trainer` runs one `StageRun` per stage."""

from __future__ import annotations

import math
import time

import torch
from transformers import get_scheduler

from losscraft import distributed
from losscraft.core import accumulate_gradients
from losscraft.core.loss import prepare_loss
from losscraft.data.collate import DialogCollator
from losscraft.distributed import engines, sharding
from losscraft.errors import LossValueError, LosscraftError
from losscraft.models.adapters import (AdapterSnapshot, attach_adapter_experts,
                                       detach_adapter_experts)
from losscraft.recipe.schema import StageSpec
from losscraft.trainer import checkpoint as ckpt
from losscraft.trainer import run_folder
from losscraft.trainer.finite import (RecordingObjective, first_nonfinite, stop_or_skip,
                                     update_problem)
from losscraft.trainer.penalty_watch import PenaltyShareWatch
from losscraft.trainer.model_setup import (adapter_folder, adapter_only_stages, apply_lora,
                                           check_adapter_policy_stage, merge_lora,
                                           prepare_policy)
from losscraft.trainer.prepare.stage_data import MicroBatchOrder, load_examples, total_steps
from losscraft.trainer.progress import training_progress
from losscraft.trainer.resume import apply_length_change, check_warmup
from losscraft.trainer.train_state import TrainState


class StageRun:
    """Stage ``index`` of ``trainer``'s recipe, starting from ``model`` at ``global_step``
    (``resume``: the checkpoint to continue from when it lies in this stage). ``trainer`` is the
    `losscraft.trainer.loop.Trainer` running the stages: its settings, run folder, experts and
    per-stage hooks (``_objective``, ``_load_experts``, ``_augment``)."""

    def __init__(self, trainer, index: int, stage: StageSpec, model: torch.nn.Module,
                 global_step: int, metrics, resume=None):
        self.trainer, self.index, self.stage = trainer, index, stage
        self.recipe = trainer.recipe
        self.model, self.global_step, self.metrics, self.resume = model, global_step, metrics, resume

    def run(self, result) -> tuple[int, bool]:
        """Every phase; returns the run's step count after the stage and whether it stopped
        early (``stop_after``) instead of finishing."""
        self.setup_model()
        self.setup_data()
        self.setup_optimizer()
        if self.train(result):
            return self.state.global_step, True
        self.save()
        return self.state.global_step, False

    # ----------------------------------------------------------------- phases
    def setup_model(self) -> None:
        """The objective and its experts; the policy with LoRA, trainable in fp32, prepared for
        the objective (e.g. the exact penalty's layer wrappers) and, under FSDP, sharded."""
        t, stage = self.trainer, self.stage
        self.objective = RecordingObjective(t._objective(stage))
        self.experts = t._load_experts(self.objective.objective)
        model = apply_lora(self.model, self.recipe.lora).to(t.device)
        prepare_policy(model, self.recipe, stage)  # fp32 trainable weights; checkpointing
        self.sharded = sharding.requested(self.recipe.run.sharding)
        self.engine = engines.for_process(sharded=self.sharded)  # one process, DDP or FSDP
        prepare_loss(self.objective, model, self.engine)
        self.adapters = [n for n in self.objective.objective.experts if n in t.adapter_experts]
        check_adapter_policy_stage(self.recipe, self.index, self.adapters)
        self.experts.update(attach_adapter_experts(model, {
            n: adapter_folder(t.out, t.adapter_experts[n]) for n in self.adapters}))
        if self.sharded:  # FSDP: each rank holds 1/N of the weights (before the optimizer)
            sharding.check_stage(self.recipe, stage, self.adapters)
            sharding.shard_model(model)
            t.console.print(f"stage '{stage.name}': FSDP, the policy sharded over "
                            f"{t.parallel.world_size} processes", highlight=False)
        model.train()
        self.model = model

    def setup_data(self) -> None:
        """The stage's examples (prepared once, on rank 0: mining, RoTs, replay), the collator
        and the seeded micro-batch order."""
        t, stage = self.trainer, self.stage
        examples = load_examples(stage, self.recipe.path, t.registry,
                                 sources=t.built.stage(stage.name).data_sources)
        self.examples = distributed.run_on_main(
            lambda: t._augment(stage, examples, self.model))
        requires = self.objective.requires
        self.collator = DialogCollator(
            t.tokenizer, max_context_tokens=stage.max_context_tokens,
            max_response_tokens=stage.max_response_tokens,
            pack_negatives="negatives" in requires, max_negatives=stage.max_negatives,
            system=stage.system_prompt or None,
            rot_placement=stage.rots.placement if stage.rots and stage.rots.enabled else "none")
        lengths = ([self.collator.row_length(e) for e in self.examples]
                   if stage.group_by_length else None)
        self.order = MicroBatchOrder(len(self.examples), stage.batch_size,
                                     seed=self.recipe.run.seed + self.index,
                                     shuffle=stage.shuffle, lengths=lengths,
                                     group_by_length=stage.group_by_length)
        self.steps = total_steps(stage, len(self.examples))
        distributed.check_shardable(len(self.examples), stage.batch_size, file=self.recipe.path,
                                    key=f"{stage.key}.batch_size")

    def setup_optimizer(self) -> None:
        """AdamW and the schedule over the trainable parameters, the stage's generator and
        `TrainState` — restored from the checkpoint when resuming inside this stage."""
        t, stage = self.trainer, self.stage
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        if not self.params:
            raise LosscraftError(f"stage '{stage.name}': the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(self.params, lr=stage.lr,
                                           weight_decay=stage.weight_decay)
        warmup = stage.warmup_steps or int(stage.warmup_ratio * self.steps)
        check_warmup(stage, self.steps, t.console)  # a warning: the stage still runs
        self.scheduler = get_scheduler(stage.schedule, self.optimizer, num_warmup_steps=warmup,
                                       num_training_steps=self.steps)
        self.generator = torch.Generator(device=t.device).manual_seed(
            self.recipe.run.seed + self.index)
        self.state = TrainState(stage_index=self.index, stage_name=stage.name,
                                global_step=self.global_step)
        if self.resume is not None:
            self.state = ckpt.load_checkpoint(
                self.resume.directory, model=self.model, optimizer=self.optimizer,
                scheduler=self.scheduler, generator=self.generator, rank=t.parallel.rank)
            apply_length_change(self.resume.changes, stage, self.state, self.steps,
                                self.optimizer, self.scheduler)
        # DDP (None in one process or under FSDP, whose module is its own wrapper)
        self.forward_model = None if self.sharded else distributed.wrap_model(self.model,
                                                                               t.device)

    def train(self, result) -> bool:
        """Optimizer steps until the stage's length; True when ``stop_after`` stopped it."""
        t, stage, state = self.trainer, self.stage, self.state
        batches = self.order.iterate(state.data_position)
        watch = PenaltyShareWatch()
        with training_progress(t.console, disable=not t.show_progress) as progress:
            task = progress.add_task(stage.name, total=self.steps, completed=state.stage_step,
                                     loss="-", tps="-")
            while state.stage_step < self.steps:
                if t.stop_after is not None and t.steps_this_call >= t.stop_after:
                    self.checkpoint()
                    return True
                record = self.train_step(batches)
                watch.see(record)
                if state.stage_step % self.recipe.run.log_every == 0 or \
                        state.stage_step == self.steps:
                    self.metrics.write(record)
                result.last_metrics[stage.name] = record
                progress.update(task, advance=1, loss=f"{record.get('loss', math.nan):.4f}",
                                tps=f"{record['tokens_per_s']:.0f}")
                if stage.checkpoint_every and state.stage_step % stage.checkpoint_every == 0 \
                        and state.stage_step < self.steps:
                    self.checkpoint()
        for line in watch.warnings(stage.name):
            t.console.print(f"[bold yellow]warning:[/] {line}", highlight=False)
        return False

    def save(self) -> None:
        """The stage's model folder (LoRA merged; an expert stage's adapter beside or instead
        of the weights) and the stage-end marker; every rank then waits for rank 0's files."""
        t, stage = self.trainer, self.stage
        detach_adapter_experts(self.model, self.adapters)
        adapter = (AdapterSnapshot(self.model) if stage.name in t.adapter_experts.values()
                   else None)  # an expert's adapter, kept beside (or instead of) the weights
        weights = stage.name not in adapter_only_stages(self.recipe)
        model = merge_lora(self.model) if weights else self.model
        # FSDP: the full (unsharded) weights, gathered to rank 0 (every rank takes part)
        full = sharding.full_model_state(model) if sharding.is_sharded(model) else None
        if t.parallel.is_main:
            run_folder.save_model(t.out, t.path("stages", stage.name, "model"), model,
                                  t.tokenizer, adapter=adapter, weights=weights, full_state=full)
        self.state.stage_done = True
        ckpt.save_stage_end(
            t.path("checkpoints", f"stage-{self.index:02d}-{stage.name}-end"),
            parallel=t.parallel, state=self.state, recipe=t.normalised)
        distributed.barrier()  # the next stage (every rank) loads what rank 0 saved

    # ----------------------------------------------------------------- one step
    def train_step(self, batches) -> dict:
        """One optimizer step over ``grad_accum`` micro-batches; returns its metrics record."""
        t, stage, state = self.trainer, self.stage, self.state
        started = time.perf_counter()
        micro = [self.collator([self.examples[i] for i in distributed.shard(next(batches))])
                 .to(t.device) for _ in range(stage.grad_accum)]
        step_metrics = self.backward(micro)
        grad_norm = sharding.full(torch.nn.utils.clip_grad_norm_(
            self.params, stage.max_grad_norm if stage.max_grad_norm > 0 else float("inf")))
        lr = self.scheduler.get_last_lr()[0]  # the rate this step used
        step_metrics = self.optimizer_step(step_metrics, lr, float(grad_norm))
        state.stage_step += 1
        state.global_step += 1
        state.data_position += stage.grad_accum
        t.steps_this_call += 1
        elapsed = time.perf_counter() - started
        tokens = int(distributed.all_reduce_sum(sum(int(b.lengths.sum()) for b in micro)))
        return {"step": state.global_step, "stage": stage.name, "stage_step": state.stage_step,
                "epoch": self.order.epoch_of(state.data_position - 1), "lr": lr,
                "grad_norm": float(grad_norm), "tokens": tokens,
                "tokens_per_s": tokens / max(elapsed, 1e-9), "step_seconds": elapsed,
                **step_metrics}

    def backward(self, micro: list) -> dict:
        """Gradients of the objective over the step's micro-batches (a term's unusable value
        names stage and step; Ctrl-C saves a checkpoint first)."""
        t = self.trainer
        self.objective.reset()
        try:  # step-level terms (the gradient penalty) share state across `micro`
            return accumulate_gradients(
                self.objective, self.model, micro, experts=self.experts, tokenizer=t.tokenizer,
                need_hidden_states="hidden_states" in self.objective.requires,
                step=self.state.global_step, generator=self.generator,
                autocast_dtype=t.autocast_dtype, forward_model=self.forward_model,
                engine=self.engine)
        except LossValueError as exc:  # a term returned something unusable
            raise exc.at(stage=self.stage.name, step=self.state.global_step + 1) from None
        except KeyboardInterrupt:
            self.optimizer.zero_grad(set_to_none=True)
            self.checkpoint()
            raise LosscraftError(f"interrupted; checkpoint saved in {t.out}: "
                                 "continue with --resume") from None

    def optimizer_step(self, step_metrics: dict, lr: float, grad_norm: float) -> dict:
        """Step the optimizer unless a loss, term or the gradient norm is non-finite on any
        rank (then the weights stay as they were: stop, or skip the step)."""
        t = self.trainer
        problem = first_nonfinite(self.objective.calls, grad_norm)
        if distributed.any_rank(problem is not None) and problem is None:
            problem = "a loss or term on another rank is non-finite"
        if problem is None:  # the optimizer state and the size of the update it would make
            problem = update_problem(self.optimizer, self.recipe.run.max_update_ratio)
        if problem is not None:  # before optimizer.step(): the weights stay good
            self.optimizer.zero_grad(set_to_none=True)
            stop_or_skip(problem, stage=self.stage, state=self.state, metrics=self.metrics,
                         objective=self.objective, lr=lr, grad_norm=grad_norm,
                         run=self.recipe.run, checkpoints=t.out / "checkpoints",
                         console=t.console, params=self.params)
            step_metrics = {**self.objective.summed(), "skipped": problem}
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return step_metrics

    def checkpoint(self) -> None:
        """A mid-stage checkpoint at the current step."""
        t = self.trainer
        ckpt.save_step_checkpoint(
            t.path("checkpoints", f"step-{self.state.global_step:06d}"), parallel=t.parallel,
            model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
            state=self.state, generator=self.generator, recipe=t.normalised)
