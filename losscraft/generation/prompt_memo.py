"""`PromptMemo`: the encoded prompts of one frozen model, kept for the next call that encodes
the same batch of prompts.

The before/after summary reads the same held-back contexts with the base model up to three
times: to sample the base model's replies, to score those replies' perplexity under it, and to
score the final model's replies under it. Each call encodes its prompts in the same batches (the
same contexts, sorted by length, the same number of contexts a batch), so the second and third
encodings of a batch can be the first one's key/value cache and last-position logits, restored
instead of recomputed. A batch is only reused when its prompts are token for token those of the
batch encoded first, so every output stays exactly what encoding it again gives (padding is
masked out, so the padding token does not matter).

Only for a model whose weights do not change while the memo lives: the memo knows the model by
identity, not by its weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import DynamicLayer


class PromptMemo:
    """Encoded prompt batches of ``model`` (see the module docstring). ``max_batches`` bounds
    the memory it holds (each batch: its key/value cache, a few tens of MB for SmolLM2-135M)."""

    def __init__(self, model, max_batches: int = 64):
        self.model = model
        self.max_batches = max_batches
        self._found: dict[tuple[tuple[int, ...], ...], tuple] = {}
        self.hits = 0
        self.misses = 0

    def serves(self, model) -> bool:
        """Whether this memo holds encodings of ``model`` (the same object)."""
        return model is self.model

    def restore(self, prompts: Sequence[Sequence[int]], cache):
        """``(last-position logits, position ids)`` of ``prompts`` with their keys and values
        written into the empty ``cache``, or ``None`` when this batch was not encoded before."""
        found = self._found.get(_key(prompts))
        if found is None or not _plain(cache):
            self.misses += 1
            return None
        layers, logits, positions = found
        for index, (keys, values) in enumerate(layers):
            cache.update(keys, values, index)
        self.hits += 1
        return logits.clone(), positions.clone()

    def keep(self, prompts: Sequence[Sequence[int]], cache, logits: torch.Tensor,
             positions: torch.Tensor) -> None:
        """Remember the encoding of ``prompts`` (``cache`` holding only them, just encoded)."""
        if len(self._found) >= self.max_batches or not _plain(cache):
            return
        layers = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
        self._found[_key(prompts)] = (layers, logits.clone(), positions.clone())


def _key(prompts: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(p) for p in prompts)


def _plain(cache) -> bool:
    """Whether every layer of ``cache`` is a full-attention `DynamicLayer` (or a subclass that
    stores keys and values the same way): other layer kinds keep state a copy would miss."""
    return all(isinstance(layer, DynamicLayer) and not layer.is_sliding for layer in cache.layers)
