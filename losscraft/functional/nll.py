"""Masked token negative log-likelihood."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscraft.functional.linear_head import LinearHead


def token_nll(
    logits: torch.Tensor | LinearHead,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked mean token negative log-likelihood.

    ``Σ_t m_t · (−log softmax(logits_t)[targets_t]) / normalizer``.

    Args:
        logits: ``(..., V)`` unnormalised scores; ``logits[..., t, :]`` predicts ``targets[..., t]``.
        targets: ``logits.shape[:-1]`` token ids (negative ids are ignored).
        mask: ``logits.shape[:-1]`` weights (1 on response tokens); defaults to ``targets >= 0``.
        normalizer: divide by this instead of ``Σ mask``. Pass the masked-token count of the whole
            optimizer step so that gradient accumulation over micro-batches gives the same
            gradient as one large batch.

    A `LinearHead` (hidden states + output weight) in place of ``logits`` takes the fused path,
    `losscraft.functional.fused_ce.fused_linear_nll`: same value and gradient, no ``(..., V)``
    tensor.

    Returns:
        A scalar tensor (0 when the mask is empty).
    """
    if isinstance(logits, LinearHead):
        from losscraft.functional.fused_ce import fused_linear_nll

        return fused_linear_nll(logits, targets, mask, normalizer=normalizer)
    valid = targets >= 0
    weight = valid.to(logits.dtype) if mask is None else mask.to(logits.dtype) * valid
    nll = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(),
        targets.clamp_min(0).reshape(-1),
        reduction="none",
    ).view_as(weight)
    total = (nll * weight).sum()
    denom = weight.sum() if normalizer is None else normalizer
    if not torch.is_tensor(denom):
        denom = torch.tensor(float(denom), device=total.device)
    return total / denom.clamp_min(1.0)
