"""The non-finite guard: every micro-batch's loss and term values are recorded, and before the
optimizer steps the trainer asks `first_nonfinite` whether any of them, or the gradient norm, is
NaN/inf. A term whose per-micro-batch metric is NaN while the total loss is finite (e.g. a term
with no tokens in that micro-batch) is not an error — only what reaches the gradient counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from losscraft.core.checks import nonfinite  # the one NaN/inf check, shared with term checks
from losscraft.errors import NonFiniteError
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


def stop_or_skip(problem: str, *, stage, state, metrics, objective, lr: float, grad_norm: float,
                 run, checkpoints: Path, console) -> None:
    """A non-finite step: log its record, then stop (``run.on_nonfinite = "stop"``, the
    default: `NonFiniteError` naming step, stage and term) or count a skip."""
    step = state.global_step + 1
    record = {"step": step, "stage": stage.name, "stage_step": state.stage_step + 1,
              "lr": lr, "grad_norm": grad_norm, **objective.summed(), "nonfinite": problem}
    if run.on_nonfinite == "skip" and state.skipped_steps < run.max_skipped_steps:
        state.skipped_steps += 1
        console.print(f"[yellow]step {step}, stage {stage.name}: {problem}; step "
                      f"skipped ({state.skipped_steps}/{run.max_skipped_steps})[/]",
                      highlight=False)
        return
    metrics.write({**record, "stopped": True})
    latest = find_resume_checkpoint(checkpoints)
    where = f"; the last good checkpoint is {latest[0].name}" if latest else ""
    limit = (f" (more than run.max_skipped_steps = {run.max_skipped_steps} "
             "skipped)" if run.on_nonfinite == "skip" else "")
    raise NonFiniteError(f"step {step}, stage {stage.name}, {problem}{limit}: stopped before "
                         f"the optimizer step{where} (lower lr, enable clipping, or set "
                         "run.on_nonfinite = \"skip\")")
