"""RoT generator ``retrieval`` (the offline default): the rules-of-thumb of the most similar
contexts in a bank of examples, by sentence-embedding cosine similarity (all-MiniLM-L6-v2).

The bank is a data source's examples (those with RoTs); their contexts are embedded once, on the
first call, and kept in memory. Identical contexts are merged (their RoTs pooled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from losscraft.errors import DataError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft.data.chat import context_text
from losscraft_plugins.scoring.common import create_component, embed, minilm_embedder


class RetrievalRoTs:
    """RoTs of the ``top_k`` bank contexts nearest to each history.

    Args:
        source: name of the data source whose examples form the bank (e.g. ``prosocial_dialog``).
        source_params: that source's parameters.
        top_k: how many nearest bank contexts contribute their RoTs.
        min_similarity: ignore bank contexts whose cosine similarity is below this.
        max_rots: keep at most this many RoTs per history (``None``: all, deduplicated).
        context_turns: how many of the last turns form the text that is embedded (bank and query).
        max_bank: use at most this many bank contexts (the first ones; ``None``: all).
        batch_size: texts per embedding call.
        device: device of the embedder (``"cpu"``, ``"cuda"``, ``"auto"``).
        bank_examples: examples to use instead of ``source`` (from code or tests).
        bank: bare RoT strings to use instead of examples; the RoTs themselves are embedded and
            matched against the history.
        embedder: a sentence embedder to use instead of MiniLM (``encode`` or a callable).
    """

    def __init__(self, source: str | None = None, source_params: dict | None = None,
                 top_k: int = 3, min_similarity: float = 0.3, max_rots: int | None = None,
                 context_turns: int = 2, max_bank: int | None = None, batch_size: int = 64,
                 device: str = "cpu", bank_examples: Iterable[Example] | None = None,
                 bank: Sequence[str] | None = None, embedder: Any = None):
        if source is None and bank_examples is None and bank is None:
            raise RecipeError("the retrieval RoT generator needs a bank: set 'source' to a data "
                              "source with rules-of-thumb (e.g. prosocial_dialog)", key="source")
        if source_params is not None and not isinstance(source_params, dict):
            raise RecipeError(f"expected a table, got {source_params!r}", key="source_params")
        for key, value in (("top_k", top_k), ("context_turns", context_turns),
                           ("batch_size", batch_size), ("max_rots", max_rots or 1),
                           ("max_bank", max_bank or 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RecipeError(f"expected a positive integer, got {value!r}", key=key)
        if not -1.0 <= float(min_similarity) <= 1.0:
            raise RecipeError(f"expected a cosine in [-1, 1], got {min_similarity}",
                              key="min_similarity")
        self.source, self.source_params = source, dict(source_params or {})
        self.top_k, self.min_similarity, self.max_rots = top_k, float(min_similarity), max_rots
        self.context_turns, self.max_bank, self.batch_size = context_turns, max_bank, batch_size
        self.device, self._embedder = device, embedder
        self._bank_examples, self._bank = bank_examples, bank
        self._keys: list[str] | None = None
        self._rots: list[list[str]] = []
        self._vectors: torch.Tensor | None = None

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = minilm_embedder(self.device)
        return self._embedder

    def _examples(self) -> Iterable[Example]:
        if self._bank_examples is not None:
            return self._bank_examples
        return create_component("data_source", self.source, self.source_params, param="source")

    def _build(self) -> None:
        pooled: dict[str, list[str]] = {}
        if self._bank is not None:
            for rot in self._bank:
                pooled.setdefault(str(rot).strip(), [str(rot).strip()])
        else:
            for ex in self._examples():
                if not ex.rots:
                    continue
                key = context_text(ex.history, last=self.context_turns)
                if key not in pooled and self.max_bank and len(pooled) >= self.max_bank:
                    break
                pooled.setdefault(key, []).extend(ex.rots)
        pooled.pop("", None)
        if not pooled:
            where = f"data source '{self.source}'" if self._bank is None and \
                self._bank_examples is None else "the given bank"
            raise DataError(f"RoT bank is empty: {where} has no examples with rules-of-thumb",
                            field="rots")
        self._keys = list(pooled)
        self._rots = [list(dict.fromkeys(r.strip() for r in rots if r.strip()))
                      for rots in pooled.values()]
        self._vectors = embed(self.embedder, self._keys, batch_size=self.batch_size)

    def generate(self, histories: Sequence[Sequence[str]]) -> list[list[str]]:
        """One list of RoTs per history (nearest bank context first; may be empty)."""
        if not histories:
            return []
        if self._vectors is None:
            self._build()
        queries = embed(self.embedder, [context_text(h, last=self.context_turns)
                                        for h in histories], batch_size=self.batch_size)
        sims = queries @ self._vectors.T
        k = min(self.top_k, sims.shape[1])
        values, indices = sims.topk(k, dim=1)
        out = []
        for row_values, row_indices in zip(values.tolist(), indices.tolist()):
            seen: dict[str, str] = {}
            for sim, j in zip(row_values, row_indices):
                if sim < self.min_similarity:
                    break
                for rot in self._rots[j]:
                    seen.setdefault(rot.casefold(), rot)
            rots = list(seen.values())
            out.append(rots[: self.max_rots] if self.max_rots else rots)
        return out


@hookimpl
def register_rot_generators(register):
    register("rot_retrieval", RetrievalRoTs, aliases=("retrieval",))
