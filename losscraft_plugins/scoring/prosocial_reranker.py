"""Reranker ``prosocial``: order sampled replies by fluency and prosociality (Das & Srihari 2024).

For the K candidates of one history:

- fluency = mean log-probability per token under a reference LM (the policy by default, given by
  ``bind(model, tokenizer)``);
- prosociality = (1 − P(unsafe)) + P(prosocial) from a scorer (the default judge gives both; a
  scorer without ``p_prosocial`` contributes 1 − P(unsafe) only) + ``rot_weight`` · agreement
  with the context's rules-of-thumb (max cosine similarity between the candidate and any RoT,
  MiniLM embeddings; 0 without RoTs).

Each criterion is normalised over the K candidates (min-max or z-score), then
``score = fluency_weight · fluency' + prosocial_weight · prosociality'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from losscraft.plugins.protocols import RankedCandidate, RotGenerator, Scorer, prosocial_method
from losscraft.errors import ModelError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft_plugins.scoring.common import create_component, embed, minilm_embedder

NORMALIZERS = ("minmax", "zscore")


def normalize_scores(values: Sequence[float], method: str = "minmax") -> list[float]:
    """Scale ``values`` over the candidate set: ``minmax`` to [0, 1], ``zscore`` to mean 0 and
    unit (population) standard deviation. A constant set maps to zeros."""
    x = torch.tensor(list(values), dtype=torch.float64)
    if x.numel() == 0:
        return []
    if method == "minmax":
        span = x.max() - x.min()
        y = (x - x.min()) / span if span > 0 else torch.zeros_like(x)
    else:
        std = x.std(unbiased=False)
        y = (x - x.mean()) / std if std > 0 else torch.zeros_like(x)
    return y.tolist()


class ProsocialReranker:
    """Rank candidate replies by normalised fluency and prosociality.

    Args:
        scorer: a registered scorer name (or a `Scorer` object from code).
        scorer_params: that scorer's parameters.
        rot_generator: a registered RoT generator name (or object) used when ``rerank`` gets no
            RoTs; ``None``: only RoTs passed to ``rerank`` count.
        rot_generator_params: that generator's parameters.
        fluency_weight: weight of normalised fluency (0 skips the reference LM).
        prosocial_weight: weight of normalised prosociality.
        rot_weight: weight of RoT agreement inside prosociality.
        normalize: ``"minmax"`` or ``"zscore"`` (per candidate set).
        batch_size: candidates per reference-LM forward pass.
        device: device of the sentence embedder.
        reference_model: reference LM (from code); otherwise set by ``bind``.
        reference_tokenizer: its tokenizer.
        embedder: sentence embedder (from code); default the bundled MiniLM.
    """

    def __init__(self, scorer: str | Scorer = "safety_judge", scorer_params: dict | None = None,
                 rot_generator: str | RotGenerator | None = None,
                 rot_generator_params: dict | None = None, fluency_weight: float = 1.0,
                 prosocial_weight: float = 1.0, rot_weight: float = 0.5,
                 normalize: str = "minmax", batch_size: int = 8, device: str = "cpu",
                 reference_model: Any = None, reference_tokenizer: Any = None,
                 embedder: Any = None):
        if normalize not in NORMALIZERS:
            raise RecipeError(f"expected one of {', '.join(NORMALIZERS)}, got {normalize!r}",
                              key="normalize")
        for key, value in (("fluency_weight", fluency_weight),
                           ("prosocial_weight", prosocial_weight), ("rot_weight", rot_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise RecipeError(f"expected a number, got {value!r}", key=key)
        self._scorer_spec, self.scorer_params = scorer, scorer_params
        self._rot_spec, self.rot_generator_params = rot_generator, rot_generator_params
        self._scorer: Scorer | None = None
        self._rot_generator: RotGenerator | None = None
        self.fluency_weight, self.prosocial_weight = float(fluency_weight), float(prosocial_weight)
        self.rot_weight, self.normalize = float(rot_weight), normalize
        self.batch_size, self.device, self._embedder = batch_size, device, embedder
        self.reference_model, self.reference_tokenizer = reference_model, reference_tokenizer

    def bind(self, model, tokenizer) -> ProsocialReranker:
        """Use ``model`` (usually the policy) as the reference LM for fluency; returns self."""
        self.reference_model, self.reference_tokenizer = model, tokenizer
        return self

    @property
    def is_bound(self) -> bool:
        return self.reference_model is not None

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            self._scorer = create_component("scorer", self._scorer_spec, self.scorer_params,
                                            param="scorer", protocol=Scorer)
        return self._scorer

    @property
    def rot_generator(self) -> RotGenerator | None:
        if self._rot_generator is None and self._rot_spec is not None:
            self._rot_generator = create_component(
                "rot_generator", self._rot_spec, self.rot_generator_params,
                param="rot_generator", protocol=RotGenerator)
        return self._rot_generator

    def _fluency(self, history: Sequence[str], candidates: list[str]) -> list[float]:
        if self.fluency_weight == 0:
            return [0.0] * len(candidates)
        if self.reference_model is None:
            raise ModelError("reranker 'prosocial' has no reference LM for fluency: call "
                             "reranker.bind(model, tokenizer) or set fluency_weight = 0")
        from losscraft.generation.decode import response_nll  # transformers: on use

        nll = response_nll(self.reference_model, self.reference_tokenizer,
                           [history] * len(candidates), candidates, batch_size=self.batch_size)
        return [-total / max(count, 1) for total, count in nll]

    def _rot_agreement(self, candidates: list[str], rots: Sequence[str]) -> list[float]:
        if not rots or self.rot_weight == 0:
            return [0.0] * len(candidates)
        if self._embedder is None:
            self._embedder = minilm_embedder(self.device)
        vectors = embed(self._embedder, candidates + list(rots))
        sims = vectors[: len(candidates)] @ vectors[len(candidates):].T
        return sims.max(dim=1).values.tolist()

    def rerank(self, history: Sequence[str], candidates: Sequence[str], *,
               rots: Sequence[str] | None = None) -> list[RankedCandidate]:
        """Candidates best first, each with raw and normalised criterion scores."""
        candidates = list(candidates)
        if not candidates:
            return []
        if rots is None and self.rot_generator is not None:
            rots = self.rot_generator.generate([list(history)])[0]
        fluency = self._fluency(history, candidates)
        contexts = [list(history)] * len(candidates)
        p_unsafe = self.scorer.p_unsafe(contexts, candidates)
        prosocial_fn = prosocial_method(self.scorer)
        p_prosocial = (prosocial_fn(contexts, candidates) if prosocial_fn is not None
                       else [0.0] * len(candidates))
        agreement = self._rot_agreement(candidates, rots or [])
        prosocial = [1.0 - p + q + self.rot_weight * a
                     for p, q, a in zip(p_unsafe, p_prosocial, agreement)]
        fluency_n = normalize_scores(fluency, self.normalize)
        prosocial_n = normalize_scores(prosocial, self.normalize)
        ranked = []
        for i, text in enumerate(candidates):
            score = self.fluency_weight * fluency_n[i] + self.prosocial_weight * prosocial_n[i]
            ranked.append(RankedCandidate(text, score, {
                "fluency": fluency[i], "p_unsafe": float(p_unsafe[i]),
                "p_prosocial": float(p_prosocial[i]),
                "rot_agreement": agreement[i], "prosociality": prosocial[i],
                "fluency_norm": fluency_n[i], "prosociality_norm": prosocial_n[i]}))
        return sorted(ranked, key=lambda c: -c.score)  # stable: ties keep sampling order


@hookimpl
def register_rerankers(register):
    register("prosocial_reranker", ProsocialReranker, aliases=("prosocial",))
