"""Weighted composition of loss terms into one objective."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from losscraft.core.checks import check_term_output
from losscraft.core.context import StepContext
from losscraft.core.engine import StepEngine
from losscraft.core.loss import Loss, LossOutput, loss_experts, loss_requires, prepare_loss


@dataclass
class Term:
    """One weighted term of an objective; ``name`` prefixes its metrics in the log."""

    name: str
    loss: Loss
    weight: float = 1.0


class WeightedObjective:
    """``Σ_i w_i · L_i``. Logs every term's unweighted value (``<name>``), its weight
    (``<name>/weight``) and the term's own metrics (``<name>/<metric>``); ``loss`` is the total.
    Term values, ``loss`` and the metrics a term declares in ``LossOutput.summed`` are marked
    summed over the step's micro-batches; `finish_metrics` applies the terms' own step-level
    metrics."""

    def __init__(self, terms: list[Term]):
        if not terms:
            raise ValueError("an objective needs at least one term")
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"objective term names must be unique, got {names}")
        self.terms = list(terms)

    @property
    def requires(self) -> frozenset[str]:
        return frozenset().union(*(loss_requires(t.loss) for t in self.terms))

    @property
    def experts(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for t in self.terms:
            seen.update(dict.fromkeys(loss_experts(t.loss)))
        return tuple(seen)

    def prepare(self, model, engine: StepEngine | None = None) -> None:
        """Each term's `prepare_loss` (with the run's ``engine``), in order."""
        for term in self.terms:
            prepare_loss(term.loss, model, engine)

    def __call__(self, ctx: StepContext) -> LossOutput:
        total: torch.Tensor | None = None
        metrics: dict[str, float | torch.Tensor] = {}
        summed = {"loss"}
        grad_expected = torch.is_grad_enabled() and any(
            p.requires_grad for p in ctx.model.parameters())
        for term in self.terms:
            out = ctx.evaluate(term.loss)
            check_term_output(term.name, out, step=ctx.step, grad_expected=grad_expected)
            contribution = out.value * term.weight if term.weight != 1.0 else out.value
            total = contribution if total is None else total + contribution
            metrics[term.name] = out.value.detach()
            metrics[f"{term.name}/weight"] = float(term.weight)
            for key, value in out.metrics.items():
                metrics[f"{term.name}/{key}"] = value.detach() if torch.is_tensor(value) else value
            summed.add(term.name)
            summed.update(f"{term.name}/{key}" for key in out.summed)
        assert total is not None
        metrics["loss"] = total.detach()
        return LossOutput(total, metrics, frozenset(summed))

    def finish_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Step-level metrics of the terms that define ``finish_metrics`` (see `Loss`), from the
        step's combined ``metrics`` (prefixed names, as logged); returns the prefixed updates."""
        updates: dict[str, float] = {}
        for term in self.terms:
            finish = getattr(term.loss, "finish_metrics", None)
            if finish is None or term.name not in metrics:
                continue
            prefix = f"{term.name}/"
            own = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
            own["value"] = metrics[term.name]
            updates.update({prefix + k: v for k, v in finish(own).items()})
        return updates
