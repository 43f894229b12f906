"""KL divergence of a policy from a frozen reference, per token."""

from __future__ import annotations

import torch

from losscraft.functional.js import masked_mean, select_positions


def kl_divergence(logits_p: torch.Tensor, logits_ref: torch.Tensor,
                  mask: torch.Tensor | None = None, *,
                  normalizer: float | torch.Tensor | None = None) -> torch.Tensor:
    """Mean over masked positions of ``KL(ref ‖ p) = Σ_v q_v (log q_v − log p_v)``, with ``q``
    the reference's distribution: the forward KL, which is the expected NLL of the reference's
    own next tokens under the policy minus their entropy — what training on infinitely many of
    its samples would minimise. ``logits_p`` carries the gradient; ``logits_ref`` is treated as
    a constant. Positions where ``mask`` is 0 are skipped; ``normalizer`` replaces ``Σ mask`` as
    the denominator (e.g. the optimizer step's token count), clamped to ≥ 1."""
    weights, p, ref = select_positions(mask, logits_p, logits_ref)
    log_q = torch.log_softmax(ref.detach().float(), dim=-1)
    log_p = torch.log_softmax(p.float(), dim=-1)
    per_position = (log_q.exp() * (log_q - log_p)).sum(dim=-1)
    return masked_mean(per_position, weights, normalizer)
