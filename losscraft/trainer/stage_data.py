"""A stage's examples and their deterministic, resumable micro-batch order."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch

from losscraft.errors import DataError, RecipeError
from losscraft.plugins import Registry
from losscraft.recipe.schema import StageSpec
from losscraft.recipe.validate import build_component
from losscraft.types import Example


def load_examples(stage: StageSpec, file: str, registry: Registry) -> list[Example]:
    """All examples of a stage's data sources (each cut to its ``limit``), in source order."""
    examples: list[Example] = []
    for spec in stage.data:
        source = build_component("data_source", spec, file, registry)
        items = iter(source)
        if spec.limit:
            items = itertools.islice(items, spec.limit)
        loaded = list(items)
        for ex in loaded:
            ex.source = ex.source or spec.plugin
        examples.extend(loaded)
    if not examples:
        raise RecipeError("the stage's data sources produced no examples", file=file,
                          key=f"{stage.key}.data")
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise DataError(f"data source yielded {type(ex).__name__}, expected Example",
                            row=i + 1)
        ex.id = ex.id or f"{stage.name}-{i}"
    return examples


class MicroBatchOrder:
    """Yields micro-batches of example indices: a fresh seeded permutation each epoch (or source
    order without shuffling). Position ``p`` (micro-batches consumed) fully determines what comes
    next, which is what a checkpoint stores."""

    def __init__(self, num_examples: int, batch_size: int, *, seed: int, shuffle: bool):
        self.n = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.per_epoch = math.ceil(num_examples / batch_size)

    def _epoch_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def epoch_of(self, position: int) -> int:
        return position // self.per_epoch

    def iterate(self, start: int = 0) -> Iterator[list[int]]:
        position = start
        while True:
            epoch, within = divmod(position, self.per_epoch)
            order = self._epoch_order(epoch)
            yield order[within * self.batch_size:(within + 1) * self.batch_size]
            position += 1


def total_steps(stage: StageSpec, num_examples: int) -> int:
    """Optimizer steps for a stage: ``max_steps``, else ``epochs`` over the data."""
    if stage.max_steps:
        return stage.max_steps
    micro = math.ceil(num_examples / stage.batch_size)
    return max(1, math.ceil(stage.epochs * micro / stage.grad_accum))
