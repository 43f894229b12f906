"""``length_penalised_nll``: NLL of the positive reply plus a penalty per response token."""

from losscraft import LossOutput, StepContext, StepMean, hookimpl
from losscraft.errors import RecipeError
from losscraft.functional import token_nll

#: the step's response tokens: divides each micro-batch's sums into a mean over the whole step
PER_TOKEN = StepMean("length_penalised_nll_tokens", lambda b: b.response_mask.sum())


class LengthPenalisedNLL:
    """NLL of the positive reply plus a penalty per response token.

    Args:
        per_token: penalty added per response token (>= 0).
    """

    def __init__(self, per_token: float = 0.0):
        if per_token < 0:
            raise RecipeError(f"must be >= 0, got {per_token}", key="per_token")
        self.per_token = per_token

    def __call__(self, ctx: StepContext) -> LossOutput:
        mask = ctx.batch.response_mask
        tokens = PER_TOKEN.normalizer(ctx)
        value = token_nll(ctx.logits, ctx.batch.targets, mask, normalizer=tokens)
        length = mask.sum() / tokens  # this micro-batch's share of the step's tokens
        return LossOutput(value + self.per_token * length, {"tokens": mask.sum()},
                          summed=frozenset({"tokens"}))


@hookimpl
def register_objectives(register):
    register("length_penalised_nll", LengthPenalisedNLL)
