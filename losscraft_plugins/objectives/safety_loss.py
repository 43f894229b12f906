"""``safety_loss`` objective: Khalatbari et al. (2023)'s expert-guided safety loss.

``L_S = −β·JS(p_θ, p_toxic) + γ·JS(p_θ, p_clean)`` on every positive-response token, averaged
over the response tokens of the whole optimizer step. Needs two frozen experts declared in the
recipe (by default ``[experts.clean]`` and ``[experts.toxic]``) that share the policy's
tokenizer. Wrap it in ``losscraft.core.penalty.GradientNormPenalty`` for FlatGD.

FlatGD writes ``J = α·L_LM + β·L_S + λ·‖∇L_S‖²`` with the same β inside ``L_S``; here ``L_S`` is
this term with its own ``beta``/``gamma`` and the outer weight is the recipe term's ``weight``
(recipes/flatgd.toml says which reading it takes). With ``beta ≥ gamma`` moving away from both
experts at once lowers the loss (``∂L_S`` along a direction that raises both divergences equally
is ``γ − β ≤ 0``): the constructor logs a warning, as it is rarely what is meant.
"""

from __future__ import annotations

import logging
import math

from losscraft import LossOutput, RecipeError, StepContext, hookimpl, per_response_token
from losscraft.functional import safety_divergences
from losscraft.functional.fused_js import fused_safety_loss
from losscraft.functional.safety import combine_safety

log = logging.getLogger(__name__)


class SafetyLoss:
    """Pull the policy towards the clean expert, push it away from the toxic one.

    Args:
        beta: weight of ``JS(policy, toxic)``, which is maximised (FlatGD Table 5: 2).
        gamma: weight of ``JS(policy, clean)``, which is minimised (FlatGD Table 5: 3).
        chunk_size: response positions per chunk of the JS computation (default: ~8M
            elements per chunk); lower it to cut peak memory with a large vocabulary.
        log_base: logarithm base of the divergences; 2 puts each JS in ``[0, 1]``.
        clean_expert: name of the clean expert in the recipe's ``[experts]``.
        toxic_expert: name of the toxic expert in the recipe's ``[experts]``.
        fused: compute the loss from the last hidden states and output weights of the policy
            and both experts, chunk by chunk (`losscraft.functional.fused_js`): no ``(tokens,
            V)`` logits or probabilities for any of the three models, forward or backward. Same
            value and gradient; needs models whose logits are ``lm_head(hidden)``.

    Metrics: ``js_clean``, ``js_toxic`` (in ``log_base`` units; summed over the step's
    micro-batches, each is the step's mean over response tokens).
    """

    def __init__(self, beta: float = 2.0, gamma: float = 3.0, chunk_size: int | None = None,
                 log_base: float = math.e, clean_expert: str = "clean",
                 toxic_expert: str = "toxic", fused: bool = False):
        if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
            raise RecipeError(f"chunk_size must be a positive integer, got {chunk_size!r}",
                              key="chunk_size")
        if not (log_base > 0 and log_base != 1):
            raise RecipeError(f"log_base must be positive and ≠ 1, got {log_base!r}",
                              key="log_base")
        if not clean_expert or not toxic_expert or clean_expert == toxic_expert:
            raise RecipeError("clean_expert and toxic_expert must name two different experts, "
                              f"got {clean_expert!r} and {toxic_expert!r}", key="toxic_expert")
        self.beta, self.gamma = float(beta), float(gamma)
        if self.beta >= self.gamma and self.beta > 0:
            log.warning("safety_loss: beta (%g) ≥ gamma (%g): the policy is rewarded for drifting "
                        "away from both experts, not only from the toxic one (FlatGD uses beta=2, "
                        "gamma=3)", self.beta, self.gamma)
        self.chunk_size, self.log_base = chunk_size, float(log_base)
        self.experts = (clean_expert, toxic_expert)
        if not isinstance(fused, bool):
            raise RecipeError(f"fused must be true or false, got {fused!r}", key="fused")
        self.fused = fused

    def __call__(self, ctx: StepContext) -> LossOutput:
        clean, toxic = self.experts
        tokens = per_response_token.normalizer(ctx)
        if self.fused:
            value, js_clean, js_toxic = fused_safety_loss(
                ctx.head, ctx.expert_head(clean), ctx.expert_head(toxic), ctx.batch.response_mask,
                beta=self.beta, gamma=self.gamma, chunk_size=self.chunk_size,
                log_base=self.log_base, normalizer=tokens)
            return LossOutput(value, {"js_clean": js_clean, "js_toxic": js_toxic},
                              frozenset({"js_clean", "js_toxic"}))
        js_clean, js_toxic = safety_divergences(
            ctx.logits, ctx.expert_logits(clean), ctx.expert_logits(toxic),
            ctx.batch.response_mask, chunk_size=self.chunk_size, log_base=self.log_base,
            normalizer=tokens)
        value = combine_safety(js_clean, js_toxic, beta=self.beta, gamma=self.gamma)
        return LossOutput(value, {"js_clean": js_clean.detach(), "js_toxic": js_toxic.detach()},
                          frozenset({"js_clean", "js_toxic"}))  # step-normalised partial sums


@hookimpl
def register_objectives(register):
    register("safety_loss", SafetyLoss)
