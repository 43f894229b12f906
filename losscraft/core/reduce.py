"""Step-mean reduction: a micro-batch's summed loss divided by a count of the whole optimizer step.

With gradient accumulation (and data parallelism) the micro-batches' values of a term must add up
to the step's mean, so that accumulating their gradients gives the gradient of one big batch. A
term therefore divides its micro-batch sum by a count over *every* micro-batch of the step
(`StepContext.step_sum`), never by its own micro-batch's count. `StepMean` names such a count
once: its key and how to count one micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from losscraft.core.context import StepContext
    from losscraft.types import Batch


@dataclass(frozen=True)
class StepMean:
    """Mean over the optimizer step: divides a micro-batch's summed loss by ``count`` summed over
    every micro-batch of the step (every rank's, in a data-parallel run).

    Args:
        key: names the count for the step; `StepContext.step_sum` computes it once per step
            under this name. Terms that count the same thing share a key, and so one sum (the
            built-ins share `per_response_token`). A count that depends on a term's parameters
            names them in its key (``f"nll_tokens:{rows}"``).
        count: ``batch → number`` for one micro-batch (e.g. ``lambda b: b.response_mask.sum()``).

    Call it as ``mean(ctx, total)`` for ``total / mean.normalizer(ctx)``, or pass
    ``mean.normalizer(ctx)`` to a function that divides itself (``normalizer=`` in
    `losscraft.functional`). Either is a collective in a data-parallel run: use it on every
    micro-batch, also one with nothing to count.
    """

    key: str
    count: Callable[[Batch], float | torch.Tensor]

    def normalizer(self, ctx: StepContext) -> float:
        """The count summed over the step, at least 1: a step with nothing to count divides its
        zero sums into 0, not NaN."""
        return max(ctx.step_sum(self.key, self.count), 1.0)

    def __call__(self, ctx: StepContext, total: torch.Tensor) -> torch.Tensor:
        """``total`` (this micro-batch's sum) as its share of the step's mean."""
        return total / self.normalizer(ctx)


#: The positive-response tokens of the step (``batch.response_mask``).
per_response_token = StepMean("response_tokens", lambda b: b.response_mask.sum())
