"""The non-finite guard: every micro-batch's loss and term values are recorded, and before the
optimizer steps the trainer asks `first_nonfinite` whether any of them, or the gradient norm, is
NaN/inf, then `update_problem` whether the step it is about to take is sane: AdamW's moments
after this gradient finite, and the update no larger than ``run.max_update_ratio`` times the
weights (relative L2 norm) — a finite but exploding run (lr 1e10) stops before its weights
explode, with the last good checkpoint intact. A term whose per-micro-batch metric is NaN while
the total loss is finite (e.g. a term with no tokens in that micro-batch) is not an error — only
what reaches the gradient counts.

A stop says which of two things happened (`term_bug`): a term whose value was already non-finite
at the step's first micro-batch while every weight was finite and of ordinary size is a bug in
that term (or the data it reads) — named, and no advice to lower the learning rate; anything
else (a later micro-batch, the gradient norm, the update) is the run diverging."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from losscraft import distributed
from losscraft.core.checks import nonfinite  # the one NaN/inf check, shared with term checks
from losscraft.errors import LosscraftError, NonFiniteError
from losscraft.trainer.checkpoint import find_resume_checkpoint


class RecordingObjective:
    """Wraps an objective; remembers each call's total and unweighted term values. Every other
    attribute (``terms``, ``requires``, ``finish_metrics``...) is the wrapped objective's."""

    def __init__(self, objective: Any):
        self.objective = objective
        self.calls: list[dict[str, float]] = []

    def __call__(self, ctx):
        out = self.objective(ctx)
        names = [t.name for t in getattr(self.objective, "terms", [])]
        values = {"loss": float(out.value.detach().float())}
        for name in names:
            value = out.metrics.get(name)
            if value is not None:
                values[name] = float(value.detach().float() if torch.is_tensor(value) else value)
        self.calls.append(values)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.objective, name)

    def reset(self) -> None:
        self.calls = []

    def summed(self) -> dict[str, float]:
        """Each value summed over the recorded micro-batches (NaN/inf propagate)."""
        total: dict[str, float] = {}
        for call in self.calls:
            for k, v in call.items():
                total[k] = total.get(k, 0.0) + v
        return total


def first_nonfinite(calls: list[dict[str, float]], grad_norm: float) -> str | None:
    """What is non-finite, as ``"term T is nan"`` / ``"loss is inf"`` / ``"gradient norm is
    nan"``, or ``None`` when the step is fine."""
    for call in calls:
        if nonfinite(call.get("loss", 0.0)):
            bad = [k for k, v in call.items() if k != "loss" and nonfinite(v)]
            if bad:
                return f"term {bad[0]} is {nonfinite(call[bad[0]])}"
            return f"loss is {nonfinite(call['loss'])}"
    if nonfinite(grad_norm):
        return f"gradient norm is {nonfinite(grad_norm)}"
    return None


#: Weights larger than this in magnitude are a diverged model, not "ordinary" ones (`term_bug`).
ORDINARY_WEIGHT = 1e4


def term_bug(calls: list[dict[str, float]], params) -> str | None:
    """The term that was already non-finite (with the loss) at the step's first micro-batch
    while every weight in ``params`` is finite and below `ORDINARY_WEIGHT` in magnitude: the
    model was healthy, so the term itself produced the NaN/inf. ``None`` otherwise."""
    if not calls or params is None or not nonfinite(calls[0].get("loss", 0.0)):
        return None
    bad = [k for k, v in calls[0].items() if k != "loss" and nonfinite(v)]
    if not bad:
        return None
    with torch.no_grad():
        for p in params:
            local = p.to_local() if hasattr(p, "to_local") else p
            if local.numel() and not bool((local.detach().abs() < ORDINARY_WEIGHT).all()):
                return None
    return bad[0]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def update_problem(optimizer, max_ratio: float) -> str | None:
    """What is wrong with the AdamW step ``optimizer`` is about to take (from its state and the
    gradients, before it steps), or ``None``: the update would be non-finite (NaN/inf in the
    optimizer state: the gradients and weights are checked before), or its L2 norm would
    exceed ``max_ratio`` times the weights' (0 turns the check off). Every rank calls it (the
    norms are summed over ranks: FSDP shards; replicas scale both norms alike). Other
    optimizers are not checked."""
    if not max_ratio or not isinstance(optimizer, torch.optim.AdamW):
        return None
    update_sq = weight_sq = 0.0
    with torch.no_grad():
        for group in optimizer.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            decay = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = _local(p.grad).float()
                if group.get("maximize"):
                    grad = -grad
                state = optimizer.state.get(p, {})
                step = float(state["step"]) + 1 if "step" in state else 1.0
                m = grad.mul(1 - beta1)  # the moments after this gradient (new tensors)
                v = grad.mul(grad).mul_(1 - beta2)
                if "exp_avg" in state:
                    m.add_(_local(state["exp_avg"]).float(), alpha=beta1)
                if "exp_avg_sq" in state:
                    v.add_(_local(state["exp_avg_sq"]).float(), alpha=beta2)
                if "max_exp_avg_sq" in state:
                    torch.maximum(_local(state["max_exp_avg_sq"]).float(), v, out=v)
                update = m.div_(1 - beta1 ** step).div_(
                    v.div_(1 - beta2 ** step).sqrt_().add_(eps))
                theta = _local(p).detach().float()
                if decay:
                    update.add_(theta, alpha=decay)
                update_sq += lr * lr * float(torch.linalg.vector_norm(update)) ** 2
                weight_sq += float(torch.linalg.vector_norm(theta)) ** 2
    update_sq, weight_sq = (distributed.all_reduce_sum(update_sq),
                            distributed.all_reduce_sum(weight_sq))
    if not math.isfinite(update_sq):  # gradients and weights are finite by now
        return "the update is non-finite (NaN/inf in the optimizer state)"
    if weight_sq <= 0:
        return None
    ratio = math.sqrt(update_sq / weight_sq)
    if ratio > max_ratio:
        return (f"the update would change the weights by {ratio:.3g} times their norm "
                f"(more than run.max_update_ratio = {max_ratio:g})")
    return None


def stop_or_skip(problem: str, *, stage, state, metrics, objective, lr: float, grad_norm: float,
                 run, checkpoints: Path, console, params=None) -> None:
    """A non-finite step: log its record, then stop (``run.on_nonfinite = "stop"``, the
    default: `NonFiniteError` naming step, stage and term — and, given the trainable
    ``params``, whether the term itself is at fault, `term_bug`) or count a skip."""
    step = state.global_step + 1
    record = {"step": step, "stage": stage.name, "stage_step": state.stage_step + 1,
              "lr": lr, "grad_norm": grad_norm, **objective.summed(), "nonfinite": problem}
    if run.on_nonfinite == "skip" and state.skipped_steps < run.max_skipped_steps:
        state.skipped_steps += 1
        console.print(f"[yellow]step {step}, stage {stage.name}: {problem}; step "
                      f"skipped ({state.skipped_steps}/{run.max_skipped_steps})[/]",
                      highlight=False)
        return
    bug = term_bug(objective.calls, params)
    metrics.write({**record, "stopped": True, **({"term_bug": bug} if bug else {})})
    try:
        latest = find_resume_checkpoint(checkpoints)
    except LosscraftError:
        latest = None
    where = f"; the last good checkpoint is {latest[0].name}" if latest else ""
    limit = (f" (more than run.max_skipped_steps = {run.max_skipped_steps} "
             "skipped)" if run.on_nonfinite == "skip" else "")
    if bug:
        advice = (f" — term {bug} was already non-finite at the step's first micro-batch while "
                  "every weight was finite: the term itself produced it (a bug in term "
                  f"{bug} or in the data it reads), not a diverging run")
    else:
        advice = " (lower lr, enable clipping, or set run.on_nonfinite = \"skip\")"
    raise NonFiniteError(f"step {step}, stage {stage.name}, {problem}{limit}: stopped before "
                         f"the optimizer step{where}{advice}")
