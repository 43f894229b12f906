"""Shared layout of the label-based baselines (unlikelihood, CRINGE): likelihood on the tokens of
safe replies, a penalty on the tokens of unsafe ones.

- positive tokens: positive-response tokens (``batch.response_mask``) of rows whose reply is
  safe (``batch.is_safe == 1``); rows with an unknown label (NaN) count as positive when
  ``unknown="positive"`` (ParlAI's "no class" examples get cross-entropy) or are skipped with
  ``unknown="ignore"``.
- negative tokens: positive-response tokens of unsafe rows (``is_safe == 0``) and, with
  ``negatives=True``, the tokens of every packed negative reply (``segment_ids ≥ 2``), weighted
  by ``batch.negative_weights``.

Each part is averaged over its own token count across the whole optimizer step.
"""

from __future__ import annotations

import torch

from losscraft import Batch, LossOutput, RecipeError, StepContext, StepMean
from losscraft.functional import token_nll

UNKNOWN_POLICIES = ("positive", "ignore")


def positive_token_mask(batch: Batch, unknown: str = "positive") -> torch.Tensor:
    """``(B, T)`` float mask of the tokens trained with likelihood."""
    safe = batch.is_safe == 1
    if unknown == "positive":
        safe = safe | batch.is_safe.isnan()
    return batch.response_mask.float() * safe.float()[:, None]


def negative_token_mask(batch: Batch, negatives: bool = False) -> torch.Tensor:
    """``(B, T)`` float weights of the tokens that get the penalty."""
    mask = batch.response_mask.float() * (batch.is_safe == 0).float()[:, None]
    if negatives and batch.num_negatives:
        slot = (batch.segment_ids - 2).clamp(0, batch.num_negatives - 1)
        per_slot = batch.negative_weights.float() * batch.negative_mask.float()
        mask = mask + (batch.segment_ids >= 2).float() * per_slot.gather(1, slot)
    return mask


class LikelihoodContrast:
    """``NLL(positive tokens) + α · negative_loss(negative tokens)``; subclasses define
    `negative_loss` and `metric` (the name its value is logged under)."""

    name = "likelihood_contrast"
    metric = "negative"

    def __init__(self, alpha: float, unknown: str, negatives: bool):
        if unknown not in UNKNOWN_POLICIES:
            raise RecipeError(f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}",
                              key="unknown")
        if not alpha >= 0:
            raise RecipeError(f"alpha must be ≥ 0, got {alpha!r}", key="alpha")
        self.alpha, self.unknown, self.negatives = float(alpha), unknown, bool(negatives)
        self.requires = frozenset({"negatives"}) if negatives else frozenset()
        # each part is a mean over its own tokens of the step
        self.per_positive = StepMean(f"positive_tokens:{self.unknown}",
                                     lambda b: positive_token_mask(b, self.unknown).sum())
        self.per_negative = StepMean(f"negative_tokens:{self.negatives}",
                                     lambda b: negative_token_mask(b, self.negatives).sum())

    def negative_loss(self, ctx: StepContext, mask: torch.Tensor,
                      normalizer: float) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, ctx: StepContext) -> LossOutput:
        pos = positive_token_mask(ctx.batch, self.unknown)
        neg = negative_token_mask(ctx.batch, self.negatives)
        nll = token_nll(ctx.logits, ctx.batch.targets, pos,
                        normalizer=self.per_positive.normalizer(ctx))
        penalty = self.negative_loss(ctx, neg, self.per_negative.normalizer(ctx))
        value = nll + self.alpha * penalty if self.alpha else nll
        # both parts are normalised by step totals: the step's values are their sums
        return LossOutput(value, {"nll": nll.detach(), self.metric: penalty.detach()},
                          frozenset({"nll", self.metric}))
