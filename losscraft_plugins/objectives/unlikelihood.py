"""``unlikelihood`` objective (label form, Welleck et al. 2020 / ParlAI): likelihood on safe
replies, ``−log(1 − p)`` on the tokens of unsafe ones. See `split_by_label` for which tokens."""

from __future__ import annotations

from losscraft import hookimpl
from losscraft.functional import unlikelihood_loss
from losscraft_plugins.objectives.split_by_label import LikelihoodContrast


class UnlikelihoodObjective(LikelihoodContrast):
    """``NLL(safe tokens) + α · UL(unsafe tokens)``, each token-averaged over the step.

    Args:
        alpha: weight of the unlikelihood part (spec default 1).
        unknown: rows with no safety label: ``"positive"`` (train with NLL) or ``"ignore"``.
        negatives: also push down the packed negative replies of each example (declares
            ``requires={"negatives"}``, weighted by their ``negative_weights``).

    Metrics: ``nll``, ``ul``.
    """

    name = "unlikelihood"
    metric = "ul"

    def __init__(self, alpha: float = 1.0, unknown: str = "positive", negatives: bool = False):
        super().__init__(alpha, unknown, negatives)

    def negative_loss(self, ctx, mask, normalizer):
        return unlikelihood_loss(ctx.logits, ctx.batch.targets, mask, normalizer=normalizer)


@hookimpl
def register_objectives(register):
    register("unlikelihood", UnlikelihoodObjective)
