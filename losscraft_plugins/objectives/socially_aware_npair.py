"""The ``socially_aware_npair`` objective: the contrastive term of Das & Srihari (2024).

One socially appropriate response (the positive) is contrasted with several inappropriate ones
(the negatives) for the same context, with sequence scores
s(x, y) = (1/T^ℓ)·Σ_t log p_θ(y_t|x, y_<t) and the n-pair loss
log(1 + Σ_j w_j·exp((s(x,y⁻_j) − s(x,y⁺) + m)/τ)) (methods.md §1.4; see
`losscraft.functional.npair_loss`). This term is only the contrastive part: the paper's stage
objective adds the language-modelling loss on the positive as a separate ``nll`` term::

    [[stages.terms]]
    plugin = "nll"
    [[stages.terms]]
    plugin = "socially_aware_npair"
    weight = 0.5
    margin = 0.0
    temperature = 1.0
    length_normalize = true

Pairs: the positive is ``Example.response``; the negatives are ``Example.negatives`` (optionally
weighted by ``Example.negative_weights``), which data sources and negative mining fill — e.g.
ProsocialDialog: gold guiding response vs. replies that condone or ignore the problem (scorer-
flagged model samples, replies borrowed from ``__casual__`` contexts), weighted by the context's
``safety_label`` severity; MIC: answers that agree with the RoT vs. answers that contradict it.
Rows without negatives contribute nothing. The collator packs a row's positive and negatives
behind one shared context (block attention mask), so every score comes from the one shared
policy forward (``ctx.logits``) — no extra forward per negative.

CLICK's sequence hinge max(0, m + NLL(y⁺) − NLL(y⁻)) (m = 20 nats, weight 0.5) is the one-negative,
τ → 0 limit with ``length_normalize = false``: use a small τ and scale the weight by τ.
"""

from __future__ import annotations

import torch

from losscraft import LossOutput, RecipeError, StepContext, StepMean, hookimpl
from losscraft.functional import npair_loss, segment_logprobs


def rows_with_negatives(batch) -> torch.Tensor:
    """How many rows of ``batch`` have at least one real negative."""
    return batch.negative_mask.any(-1).sum()


#: The step's rows that have negatives (rows without any contribute nothing).
per_row_with_negatives = StepMean("npair_rows_with_negatives", rows_with_negatives)


class SociallyAwareNPairLoss:
    """Sequence-score n-pair loss: the positive response against the row's negatives.

    Args:
        margin: ``m``; a negative keeps contributing until it scores ``m`` below the positive
            (nats, in the units of the score: per token with ``length_normalize``).
        temperature: ``τ > 0``; smaller values approach a hinge on the hardest negatives.
        length_normalize: score a response by its mean token log-probability (ℓ = 1) rather than
            the sum (ℓ = 0), so that long and short replies compare fairly.
        use_negative_weights: weight each negative by ``Example.negative_weights`` (e.g. the
            context's safety severity); a weight ``w`` shifts that negative's margin by τ·log w.
        fused: score the sequences from the last hidden states and the output weight, chunk by
            chunk (`losscraft.functional.fused_ce`): no ``(tokens, V)`` logits. Same value and
            gradient.

    The value is normalised by the number of rows with negatives over the whole optimizer step.
    Metrics: ``pos_score`` / ``neg_score`` (mean scores), ``accuracy`` (share of real negatives
    scored below their positive).
    """

    requires = frozenset({"negatives"})

    def __init__(self, margin: float = 0.0, temperature: float = 1.0,
                 length_normalize: bool = True, use_negative_weights: bool = False,
                 fused: bool = False):
        if not temperature > 0:
            raise RecipeError(f"temperature must be > 0, got {temperature}", key="temperature")
        if margin != margin:
            raise RecipeError("margin must be a number, got NaN", key="margin")
        self.margin = float(margin)
        self.temperature = float(temperature)
        self.length_normalize = bool(length_normalize)
        self.use_negative_weights = bool(use_negative_weights)
        if not isinstance(fused, bool):
            raise RecipeError(f"fused must be true or false, got {fused!r}", key="fused")
        self.fused = fused

    def __call__(self, ctx: StepContext) -> LossOutput:
        batch = ctx.batch
        scores = segment_logprobs(ctx.head if self.fused else ctx.logits, batch.targets,
                                  batch.segment_ids, batch.num_negatives + 1,
                                  length_normalize=self.length_normalize)
        pos, neg = scores[:, 0], scores[:, 1:]
        valid = batch.negative_mask.bool()
        per_row = npair_loss(
            pos, neg, valid, margin=self.margin, temperature=self.temperature,
            neg_weights=batch.negative_weights if self.use_negative_weights else None,
            reduction="none")
        value = per_row_with_negatives(ctx, per_row.sum())
        metrics: dict[str, float | torch.Tensor] = {"pos_score": pos.detach().mean()}
        if valid.any():
            metrics["neg_score"] = neg.detach()[valid].mean()
            metrics["accuracy"] = (neg.detach() < pos.detach().unsqueeze(-1))[valid].float().mean()
        return LossOutput(value, metrics)


@hookimpl
def register_objectives(register):
    register("socially_aware_npair", SociallyAwareNPairLoss)
