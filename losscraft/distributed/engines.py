"""The step engines of a multi-process run (`losscraft.core.engine.StepEngine`), which the trainer
passes to the step's contexts; core itself runs every step as `SingleProcess` unless told so.

- `DataParallel` (DDP): ``step_sum`` counts, the gradient penalty's ``g`` and the logged
  metrics are summed over ranks (`losscraft.distributed.all_reduce_sum`, `all_reduce_tensors`,
  `combine_metrics`).
- `FullySharded` (FSDP): the same reductions, and for a model sharded by ``fully_shard`` the
  gradient-norm penalty runs as `losscraft.distributed.sharding.finite_difference_penalty`
  (the exact method is refused: `sharding.check_penalty_method`), and the penalty's share is
  summed over every rank's shards (`losscraft.core.penalty_share.step_metrics`).

`for_process` picks the one that fits this process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from losscraft import distributed
from losscraft.core.engine import SINGLE_PROCESS, StepEngine
from losscraft.core.loss import LossOutput
from losscraft.distributed import sharding


class DataParallel:
    """Every rank runs the step on its shard of the global batch; sums span every rank (while a
    process group of several is initialised; in a single process they are the local values)."""

    @property
    def data_parallel(self) -> bool:
        return distributed.active()

    # The module's functions are looked up at call time (tests replace them to show what a
    # missing reduction would do).
    def all_reduce_sum(self, value: float | torch.Tensor) -> float:
        return distributed.all_reduce_sum(value)

    def all_reduce_tensors(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return distributed.all_reduce_tensors(tensors)

    def combine_metrics(self, values: dict[str, float], counts: dict[str, int],
                        summed: Iterable[str]) -> dict[str, float]:
        return distributed.combine_metrics(values, counts, summed)

    def sharded(self, model: nn.Module) -> bool:
        return False

    def sharded_gradient_penalty(self, penalty: Any, ctx: Any, *, key: str) -> LossOutput:
        raise NotImplementedError("a data-parallel step has no sharded model; pass "
                                  "FullySharded() for a model sharded by fully_shard")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FullySharded(DataParallel):
    """`DataParallel` for a policy sharded by ``fully_shard`` (`sharding.shard_model`): its
    gradient-norm penalty takes gradients with ``.backward()`` into ``.grad``."""

    def sharded(self, model: nn.Module) -> bool:
        return sharding.is_sharded(model)

    def sharded_gradient_penalty(self, penalty: Any, ctx: Any, *, key: str) -> LossOutput:
        sharding.check_penalty_method(penalty.method)
        return sharding.finite_difference_penalty(penalty, ctx, key)


def for_process(*, sharded: bool = False) -> StepEngine:
    """The engine for this process's steps: `FullySharded` when the policy is (to be) sharded,
    `DataParallel` while a process group of several ranks is initialised, else
    `SINGLE_PROCESS`."""
    if sharded:
        return FullySharded()
    if distributed.active():
        return DataParallel()
    return SINGLE_PROCESS
