"""`StepEngine`: how one optimizer step's numbers are combined across the processes running it.

Core computes a step on this process's micro-batches. Whether other processes share the step is
the engine's business, which the caller passes in (`StepContext`, `StepMetrics`,
`accumulate_gradients`, `losscraft.core.loss.prepare_loss`): core itself knows no process group.

- `SingleProcess` (the default everywhere): every reduction is the local value.
- Data parallel (DDP) and sharded parameters (FSDP) live in `losscraft.distributed.engines`; the
  trainer picks one from its parallel and sharding setup.

What core asks of an engine: the step-wide sums (``step_sum`` normalisers, the gradient penalty's
``g = Σ ∇L``), the step's logged metrics, whether several processes share the step, and — for a
model whose parameters are shards, which ``torch.autograd.grad`` cannot serve — the gradient-norm
penalty computed the sharded way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class StepEngine(Protocol):
    """The execution engine of a step (see the module docstring)."""

    @property
    def data_parallel(self) -> bool:
        """Several processes share the step: each holds its share of the global batch."""
        ...

    def all_reduce_sum(self, value: float | torch.Tensor) -> float:
        """``Σ`` of a scalar over the processes of the step. A collective: every process calls
        it."""
        ...

    def all_reduce_tensors(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The elementwise ``Σ`` over the processes of every tensor (same names and shapes in
        each); the inputs are not modified."""
        ...

    def combine_metrics(self, values: dict[str, float], counts: dict[str, int],
                        summed: Iterable[str]) -> dict[str, float]:
        """A step's metrics from per-micro-batch ``values`` (sums) and ``counts``: keys in
        ``summed`` are added up over every process, the rest averaged over every micro-batch
        that reported them (`merge_metrics`)."""
        ...

    def sharded(self, model: nn.Module) -> bool:
        """Whether ``model``'s parameters are shards whose gradients reach only ``.grad``."""
        ...

    def sharded_gradient_penalty(self, penalty: Any, ctx: Any, *, key: str) -> Any:
        """The output (a ``LossOutput``) of ``penalty``, a
        `losscraft.core.penalty.GradientNormPenalty` (its term and settings), on a model
        `sharded` says is sharded (``key``: its memo in ``ctx.step_state``); records its
        gradient for the step's share where `GradientNormPenalty.measures_share`; raises
        `RecipeError` for a ``penalty.method`` the engine cannot serve."""
        ...


class SingleProcess:
    """The engine of a step that one process runs alone: every reduction is the local value and
    no model is sharded."""

    @property
    def data_parallel(self) -> bool:
        return False

    def all_reduce_sum(self, value: float | torch.Tensor) -> float:
        return float(value)

    def all_reduce_tensors(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(tensors)

    def combine_metrics(self, values: dict[str, float], counts: dict[str, int],
                        summed: Iterable[str]) -> dict[str, float]:
        return merge_metrics([(values, counts, summed)])

    def sharded(self, model: nn.Module) -> bool:
        return False

    def sharded_gradient_penalty(self, penalty: Any, ctx: Any, *, key: str) -> Any:
        raise NotImplementedError("a single-process step has no sharded model; pass the "
                                  "sharded engine (losscraft.distributed.engines)")

    def __repr__(self) -> str:
        return "SingleProcess()"


#: The default engine (stateless, so one instance serves everyone).
SINGLE_PROCESS = SingleProcess()


def merge_metrics(parts: Iterable[tuple[Mapping[str, float], Mapping[str, int], Iterable[str]]]
                  ) -> dict[str, float]:
    """Combine ``(values, counts, summed)`` partial metrics, one per process: a key that any part
    lists in ``summed`` is the sum of its values; any other is the mean over every micro-batch
    that reported it (its summed values divided by the summed counts)."""
    summed: set[str] = set()
    total: dict[str, float] = {}
    number: dict[str, int] = {}
    for values, counts, part_summed in parts:
        summed.update(part_summed)
        for key, value in values.items():
            total[key] = total.get(key, 0.0) + value
            number[key] = number.get(key, 0) + counts[key]
    return {k: v if k in summed else v / number[k] for k, v in total.items()}
