"""``cringe`` objective (Adolphs et al. 2022, ParlAI ``projects/cringe``): likelihood on safe
replies, the CRINGE contrastive loss on the tokens of unsafe ones. See `split_by_label` for which
tokens. This is the single-iteration loss; the iterative variant (regenerate, relabel with a
scorer, retrain) is a training schedule around it."""

from __future__ import annotations

from losscraft import RecipeError, hookimpl
from losscraft.functional import cringe_loss
from losscraft_plugins.objectives.split_by_label import LikelihoodContrast


class CringeObjective(LikelihoodContrast):
    """``NLL(safe tokens) + α · CRINGE(unsafe tokens)``, each token-averaged over the step.

    Args:
        alpha: weight of the CRINGE part (spec default 1; CLICK used 0.2).
        k: top predictions competing as the sampled positive (spec default 1; CLICK used 5).
        unknown: rows with no safety label: ``"positive"`` (train with NLL) or ``"ignore"``.
        negatives: also contrast the packed negative replies of each example (declares
            ``requires={"negatives"}``, weighted by their ``negative_weights``).

    Samples with the step context's seeded generator. Metrics: ``nll``, ``cringe``.
    """

    name = "cringe"
    metric = "cringe"

    def __init__(self, alpha: float = 1.0, k: int = 1, unknown: str = "positive",
                 negatives: bool = False):
        super().__init__(alpha, unknown, negatives)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise RecipeError(f"k must be a positive integer, got {k!r}", key="k")
        self.k = k

    def negative_loss(self, ctx, mask, normalizer):
        return cringe_loss(ctx.logits, ctx.batch.targets, mask, k=self.k,
                           generator=ctx.generator, normalizer=normalizer)


@hookimpl
def register_objectives(register):
    register("cringe", CringeObjective)
