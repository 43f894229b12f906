"""``expert_kl`` objective: hold the policy to a frozen model where it should not change.

``KL(expert ‖ policy)`` on the reply tokens of the chosen rows, averaged over those tokens in the
optimizer step. With the base model as the expert and ``rows = "casual"`` it is the anchor of a
safety fine-tune that must not make small talk dull: the risky rows learn the new behaviour, the
casual rows are pulled back to the base model's whole next-token distribution (self-replay, by
contrast, trains on one sampled reply per context). The expert is declared in the recipe and must
share the policy's tokenizer::

    [experts.base]
    plugin = "smollm2_embedded"

    [[stages.terms]]
    plugin = "expert_kl"
    weight = 1.0
    expert = "base"
    rows = "casual"
"""

from __future__ import annotations

import torch

from losscraft import LossOutput, RecipeError, StepContext, StepMean, hookimpl
from losscraft.functional import kl_divergence

ROWS = ("all", "casual", "replayed")


class ExpertKL:
    """Forward KL from frozen expert ``expert`` to the policy on the positive reply's tokens.

    Args:
        expert: name of the expert in the recipe's ``[experts]``.
        rows: ``"all"``, ``"casual"`` (rows whose context is labelled ``__casual__``, replayed
            ones included) or ``"replayed"`` (rows whose reply is the model's own, from
            ``[stages.replay]``).

    Metrics: ``tokens`` (reply tokens compared; summed over the step).
    """

    def __init__(self, expert: str = "base", rows: str = "casual"):
        if not isinstance(expert, str) or not expert:
            raise RecipeError(f"expert must name an entry of [experts], got {expert!r}",
                              key="expert")
        if rows not in ROWS:
            raise RecipeError(f"rows must be one of {', '.join(repr(r) for r in ROWS)}, "
                              f"got {rows!r}", key="rows")
        self.experts = (expert,)
        self.rows = rows
        self.per_token = StepMean(f"expert_kl_tokens:{rows}", lambda b: self._mask(b).sum())

    def _mask(self, batch) -> torch.Tensor:
        keep = [self.rows == "all"
                or (self.rows == "casual" and ex.safety_label == "__casual__")
                or (self.rows == "replayed" and bool(ex.meta.get("replayed")))
                for ex in batch.examples]
        rows = torch.tensor(keep, dtype=batch.response_mask.dtype,
                            device=batch.response_mask.device)
        return batch.response_mask * rows.unsqueeze(-1)

    def __call__(self, ctx: StepContext) -> LossOutput:
        mask = self._mask(ctx.batch)
        tokens = self.per_token.normalizer(ctx)  # on every micro-batch: it is a collective
        if not bool(mask.any()):  # no chosen row here: a zero that keeps the graph
            return LossOutput(ctx.logits.sum() * 0.0, {"tokens": 0.0}, frozenset({"tokens"}))
        value = kl_divergence(ctx.logits, ctx.expert_logits(self.experts[0]), mask,
                              normalizer=tokens)
        return LossOutput(value, {"tokens": float(mask.sum())}, frozenset({"tokens"}))


@hookimpl
def register_objectives(register):
    register("expert_kl", ExpertKL)
