"""The base model's side of the before/after summary, kept across runs.

Every run of a recipe measures the same base model on the same held-back contexts with the same
settings and seed: its replies, their scores by both judges and their perplexity under the base
model are the same in every run. `BaseMeasurements` reads them from
`losscraft.evaluation.reply_cache` when an earlier run with the same key left them there, and
computes and stores them otherwise. The key holds the base model's weights and tokenizer, the
contexts, every sampling setting and the seed, the scorer (its behaviour on a probe), whether
perplexity is measured, the code that samples and scores, library versions, device and threads
(see `losscraft.evaluation.reply_cache`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from losscraft.evaluation.reply_cache import (cached_evaluation, code_fingerprint, enabled,
                                              scorer_fingerprint, tokenizer_fingerprint,
                                              weights_fingerprint)
from losscraft.evaluation.result import EvalResult, contexts_hash
from losscraft.recipe.schema import ReportSpec


class BaseMeasurements:
    """Cached evaluations of the summary's base model (``base``: a `LoadedModel`) scored by
    ``scorer`` on ``device``; the fingerprints are computed once, on first use. ``root``: the
    cache folder (default: `losscraft.evaluation.reply_cache`'s)."""

    def __init__(self, base, scorer, device, *, root: Path | None = None):
        self.base, self.scorer, self.device, self.root = base, scorer, device, root
        self._identity: dict[str, Any] | None = None
        self.reused: list[str] = []   # the evaluations read from the cache, by name

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = {"weights": weights_fingerprint(self.base.model),
                              "tokenizer": tokenizer_fingerprint(self.base.tokenizer),
                              "scorer": scorer_fingerprint(self.scorer),
                              "code": code_fingerprint(), "device": str(self.device)}
        return self._identity

    def parts(self, block: str, contexts: list[list[str]], spec: ReportSpec, seed: int, *,
              perplexity: bool, settings_extra: dict[str, Any], target: str) -> dict[str, Any]:
        """What decides the base model's evaluation of one summary block."""
        return {"what": "summary base evaluation", "block": block, **self.identity(),
                "contexts": contexts_hash(contexts), "num_samples": spec.num_samples,
                "threshold": spec.threshold, "max_new_tokens": spec.max_new_tokens,
                "temperature": spec.temperature, "top_p": spec.top_p, "seed": seed,
                "batch_size": spec.batch_size, "perplexity_under_base": perplexity,
                "settings_extra": settings_extra, "target": target}

    def evaluation(self, parts: dict[str, Any], compute: Callable[[], EvalResult]
                   ) -> EvalResult:
        """The evaluation keyed by ``parts``: cached, or ``compute()`` (then cached)."""
        found, reused = cached_evaluation(parts, compute, root=self.root)
        if reused:
            self.reused.append(parts["block"])
        return found

    def rescored(self, parts: dict[str, Any], second_scorer, compute: Callable[[], EvalResult]
                 ) -> EvalResult:
        """The base evaluation keyed by ``parts`` rescored by ``second_scorer``."""
        return self.evaluation({**parts, "what": "summary base rescored",
                                "second_scorer": scorer_fingerprint(second_scorer)}, compute)


def base_measurements(base, scorer, device) -> BaseMeasurements | None:
    """`BaseMeasurements`, or ``None`` when ``LOSSCRAFT_EVAL_CACHE=0`` turns the cache off."""
    return BaseMeasurements(base, scorer, device) if enabled() else None
