"""A stage's examples and their deterministic, resumable micro-batch order."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import torch

from losscraft.errors import DataError, RecipeError
from losscraft.plugins.registry import Registry
from losscraft.recipe.schema import StageSpec
from losscraft.recipe.instantiate import build_component
from losscraft.types import Example


def load_examples(stage: StageSpec, file: str, registry: Registry, *,
                  sources: list | None = None) -> list[Example]:
    """All examples of a stage's data sources (each cut to its ``limit``), in source order, each
    checked by `check_example`. ``sources``: the ``(spec, source)`` pairs already built by
    `losscraft.recipe.instantiate.build_recipe` (default: built here from ``stage.data``)."""
    examples: list[Example] = []
    built = sources if sources is not None else [
        (spec, build_component("data_source", spec, file, registry)) for spec in stage.data]
    for spec, source in built:
        items = iter(source)
        if spec.limit:
            items = itertools.islice(items, spec.limit)
        try:
            loaded = list(items)
        except UnicodeDecodeError as exc:  # a source that reads files itself
            raise DataError(f"not UTF-8 text ({exc.reason})",
                            file=f"data source '{spec.plugin}' ({spec.key})") from None
        for number, ex in enumerate(loaded, 1):
            if not isinstance(ex, Example):
                raise DataError(f"data source yielded {type(ex).__name__}, expected Example",
                                file=f"data source '{spec.plugin}' ({spec.key})", row=number)
            check_example(ex, where=f"data source '{spec.plugin}' ({spec.key})", row=number,
                          max_chars=stage.max_text_chars)
            ex.source = ex.source or spec.plugin
        examples.extend(loaded)
    if not examples:
        raise RecipeError("the stage's data sources produced no examples", file=file,
                          key=f"{stage.key}.data")
    for i, ex in enumerate(examples):
        ex.id = ex.id or f"{stage.name}-{i}"
    return examples


def check_example(ex: Example, *, where: str, row: int, max_chars: int) -> None:
    """`DataError` (naming ``where``, ``row``, the field and the example id) unless every text
    field is a string of at most ``max_chars`` characters and the response is not blank. An
    empty ``history`` is allowed: the reply is trained after an empty user turn."""
    label = f" (example {ex.id})" if ex.id else ""

    def text(value, field: str, *, blank_ok: bool = True) -> None:
        if not isinstance(value, str):
            raise DataError(f"expected text, got {type(value).__name__} {value!r:.40}{label}",
                            file=where, row=row, field=field)
        if not blank_ok and not value.strip():
            raise DataError(f"is empty or only whitespace{label}", file=where, row=row,
                            field=field)
        if len(value) > max_chars:
            raise DataError(f"is {len(value)} characters long, over the stage's max_text_chars "
                            f"= {max_chars}{label}", file=where, row=row, field=field)

    text(ex.response, "response", blank_ok=False)
    for name in ("history", "negatives", "rots"):
        value = getattr(ex, name)
        if not isinstance(value, (list, tuple)):
            raise DataError(f"expected a list of texts, got {type(value).__name__}{label}",
                            file=where, row=row, field=name)
        for i, item in enumerate(value):
            text(item, f"{name}[{i}]")


class MicroBatchOrder:
    """Yields micro-batches of example indices: a fresh seeded permutation each epoch (or source
    order without shuffling). Position ``p`` (micro-batches consumed) fully determines what comes
    next, which is what a checkpoint stores.

    With ``lengths`` (one per example, e.g. tokens of its collated row) and ``group_by_length``
    = G > 0, each epoch's permutation is cut into windows of G micro-batches, each window sorted
    by length (longest first) and cut into micro-batches, and the micro-batches of the whole
    epoch shuffled again: every micro-batch holds examples of similar length, so little of it is
    padding, while which examples meet in an epoch stays random (the length-grouped sampling of
    Hugging Face's ``group_by_length``)."""

    def __init__(self, num_examples: int, batch_size: int, *, seed: int, shuffle: bool,
                 lengths: list[int] | None = None, group_by_length: int = 0):
        if group_by_length and (lengths is None or len(lengths) != num_examples):
            raise ValueError("group_by_length needs one length per example")
        self.n = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.lengths = lengths
        self.group_by_length = group_by_length if shuffle else 0
        self.per_epoch = math.ceil(num_examples / batch_size)
        self._cached: tuple[int, list[int]] | None = None

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self._make_order(epoch))
        return self._cached[1]

    def _make_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if not self.group_by_length:
            return order
        window = self.group_by_length * self.batch_size
        batches = []
        for start in range(0, self.n, window):
            chunk = sorted(order[start:start + window], key=lambda i: -self.lengths[i])
            batches += [chunk[k:k + self.batch_size] for k in range(0, len(chunk),
                                                                    self.batch_size)]
        # the short remainder batch of the last window goes last, as without grouping
        full, rest = batches[:self.n // self.batch_size], batches[self.n // self.batch_size:]
        shuffled = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
        return [i for batch in shuffled + rest for i in batch]

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
