"""One optimizer step's gradient accumulation over its micro-batches, and the step's metrics.

`accumulate_gradients` builds a `StepContext` per micro-batch — all sharing the step's batches
(for ``step_sum`` normalisers) and one ``step_state`` (for step-level values such as a gradient
penalty's ``Σ_m ∇L_m``) — calls the objective and backpropagates each. Terms normalise by step
totals, so the accumulated gradient is that of one batch of the same rows. `StepMetrics` makes
the logged numbers independent of ``grad_accum`` in the same way: partial sums (term values and
the metrics a term lists in ``LossOutput.summed``) are summed over micro-batches, the rest are
averaged, then the objective's ``finish_metrics`` adds step-level values. Both use the step's
engine (`losscraft.core.engine`; default: this process alone) for what spans several processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from losscraft.core import penalty_share
from losscraft.core.checks import check_term_output
from losscraft.core.context import StepContext
from losscraft.core.engine import SINGLE_PROCESS, StepEngine
from losscraft.core.loss import LossOutput
from losscraft.types import Batch


class StepMetrics:
    """Combines the metrics of a step's micro-batches (see the module docstring). Text and
    non-finite values (e.g. a micro-batch without tokens for a term) are skipped. ``engine``
    combines them over the processes of the step (default: `SingleProcess`)."""

    def __init__(self, engine: StepEngine | None = None) -> None:
        self.engine: StepEngine = engine if engine is not None else SINGLE_PROCESS
        self.summed: set[str] = set()
        self.values: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, out: LossOutput) -> None:
        self.summed.update(out.summed)
        for key, value in out.metrics.items():
            if isinstance(value, str):
                continue
            value = float(value.item() if torch.is_tensor(value) else value)
            if not math.isfinite(value):
                continue
            self.values[key] = self.values.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def result(self, objective: Any = None) -> dict[str, float]:
        """The step's metrics; ``objective.finish_metrics`` (if any) adds or replaces some. With
        a data-parallel engine they are combined over every rank's micro-batches first."""
        combined = self.engine.combine_metrics(self.values, self.counts, self.summed)
        finish: Callable[[dict[str, float]], dict[str, float]] | None = getattr(
            objective, "finish_metrics", None)
        if finish is not None:
            combined.update(finish(combined))
        return combined


def accumulate_gradients(objective: Callable[[StepContext], LossOutput], model: nn.Module,
                         batches: Sequence[Batch], *, engine: StepEngine | None = None,
                         **context_args: Any) -> dict[str, float]:
    """Forward and backward ``objective`` on every micro-batch of one optimizer step (the
    gradients add up in ``.grad``); returns the step's metrics. ``context_args`` go to each
    `StepContext` (experts, tokenizer, step, generator, autocast_dtype, forward_model, ...).
    ``engine`` (default: `SingleProcess`) serves the contexts and combines the metrics.
    With a ``forward_model`` that has ``no_sync`` (``DistributedDataParallel``), gradients are
    reduced over ranks only in the last micro-batch's backward, and every trainable parameter
    receives a gradient (a zero for those the objective does not use, e.g. the output layer
    under an embedding-only loss), which DDP needs to finish its reduction."""
    batches = list(batches)
    step_state: dict[str, Any] = {}
    metrics = StepMetrics(engine)
    no_sync = getattr(context_args.get("forward_model"), "no_sync", None)
    for index, batch in enumerate(batches):
        last = index == len(batches) - 1
        with nullcontext() if no_sync is None or last else no_sync():
            ctx = StepContext(model, batch, step_batches=batches, step_state=step_state,
                              engine=engine, **context_args)
            out = objective(ctx)
            check_term_output(getattr(objective, "name", "loss"), out, step=ctx.step)
            value = out.value
            if no_sync is not None:  # DDP reduces only once every parameter has a gradient
                value = value + _zero_touching_every_parameter(model)
            value.backward()
        metrics.add(out)
        del ctx, out  # free this micro-batch's graph before the next forward
    result = metrics.result(objective)
    result.update(penalty_share.step_metrics(objective, model, step_state, result,
                                             metrics.engine))
    return result


def _zero_touching_every_parameter(model: nn.Module) -> torch.Tensor:
    """``0 ·`` one element of every trainable parameter: adds exactly nothing to any gradient,
    but gives every trainable parameter one (so DDP's reducer sees all of them ready)."""
    return sum(p.reshape(-1)[0] for p in model.parameters() if p.requires_grad) * 0.0
