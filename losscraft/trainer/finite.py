"""The non-finite guard: every micro-batch's loss and term values are recorded, and before the
optimizer steps the trainer asks `first_nonfinite` whether any of them, or the gradient norm, is
NaN/inf. A term whose per-micro-batch metric is NaN while the total loss is finite (e.g. a term
with no tokens in that micro-batch) is not an error — only what reaches the gradient counts."""

from __future__ import annotations

from typing import Any

import torch

from losscraft.core.checks import nonfinite  # the one NaN/inf check, shared with term checks


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
