"""Token-level unlikelihood loss (Welleck et al. 2020), the label form used for unsafe replies."""

from __future__ import annotations

import torch

from losscraft.functional.js import masked_mean

#: ParlAI's floor on ``1 − p`` inside the log, so a token with p ≈ 1 gives a large but finite loss.
MIN_ONE_MINUS_P = 1e-5


def target_log_probs(logits: torch.Tensor, targets: torch.Tensor,
                     mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kept positions' ``(weights, logits rows (n, V), targets (n,))``: positions with a
    negative target or zero mask are dropped before any ``(n, V)`` work is done."""
    valid = targets >= 0
    w = valid.float() if mask is None else mask.float() * valid
    idx = w.reshape(-1).nonzero().squeeze(1)
    rows = logits.reshape(-1, logits.shape[-1]).index_select(0, idx)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return w.reshape(-1).index_select(0, idx), rows.to(dtype), targets.reshape(-1)[idx]


def unlikelihood_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked mean of ``−log(clamp(1 − p_θ(y_t), min=1e-5))`` — make the targets unlikely.

    Args:
        logits: ``(..., V)`` logits; ``logits[..., t, :]`` predicts ``targets[..., t]``.
        targets: ``logits.shape[:-1]`` token ids of the unwanted reply (negative ids ignored).
        mask: ``logits.shape[:-1]`` weights; defaults to ``targets >= 0``.
        normalizer: divide by this instead of ``Σ mask`` (e.g. the step's token count).

    Returns:
        A scalar (0 when the mask is empty).
    """
    weights, rows, tgt = target_log_probs(logits, targets, mask)
    log_p = rows.gather(1, tgt[:, None]).squeeze(1) - torch.logsumexp(rows, dim=-1)
    one_minus_p = (-log_p.exp()).add(1.0).clamp_min(MIN_ONE_MINUS_P)
    return masked_mean(-torch.log(one_minus_p), weights, normalizer)
