"""CRINGE token loss (Adolphs et al. 2022), as in ParlAI's ``projects/cringe/cringe_loss.py``.

At every token ``y_t`` of a negative reply: take the top-(k+1) logits, drop ``y_t`` if it is
among them (else the (k+1)-th), sample one "positive" token ``s`` from the softmax over the k that
remain, and contrast the two: ``−log(e^{z_s} / (e^{z_s} + e^{z_{y_t}}))``. Gradient flows into
both logits (ParlAI's default ``detach_positives_during_ct=False``); the sampling does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscraft.functional.js import masked_mean
from losscraft.functional.unlikelihood import target_log_probs


def cringe_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    k: int = 1,
    generator: torch.Generator | None = None,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked mean CRINGE contrastive loss on the tokens of negative replies.

    Args:
        logits: ``(..., V)`` logits; ``logits[..., t, :]`` predicts ``targets[..., t]``.
        targets: ``logits.shape[:-1]`` token ids of the negative reply (negative ids ignored).
        mask: ``logits.shape[:-1]`` weights; defaults to ``targets >= 0``.
        k: how many top predictions (other than the target) compete as the positive. ParlAI and
            the spec default to 1 (then the positive is deterministic); CLICK used 5.
        generator: RNG for sampling the positive (seed it for reproducible runs).
        normalizer: divide by this instead of ``Σ mask`` (e.g. the step's token count).

    Returns:
        A scalar (0 when the mask is empty).
    """
    if k < 1 or k + 1 > logits.shape[-1]:
        raise ValueError(f"k must be in [1, vocab size - 1 = {logits.shape[-1] - 1}], got {k}")
    weights, rows, tgt = target_log_probs(logits, targets, mask)
    top = rows.topk(k + 1, dim=-1)
    is_target = top.indices == tgt[:, None]
    # Drop the target where present, else the (k+1)-th candidate: exactly k remain.
    drop = is_target.clone()
    drop[:, -1] |= ~is_target.any(-1)
    with torch.no_grad():
        probs = top.values.detach().masked_fill(drop, float("-inf")).softmax(-1)
        if rows.shape[0] == 0:
            pick = probs.new_zeros((0, 1), dtype=torch.long)
        else:  # sample where the generator lives (a CPU generator with CUDA logits is common)
            where = generator.device if generator is not None else probs.device
            pick = torch.multinomial(probs.to(where), 1, generator=generator).to(probs.device)
    z_pos = top.values.gather(1, pick).squeeze(1)
    z_neg = rows.gather(1, tgt[:, None]).squeeze(1)
    # −log(e^{z_s} / (e^{z_s} + e^{z_y})) = softplus(z_y − z_s)
    return masked_mean(F.softplus(z_neg - z_pos), weights, normalizer)
