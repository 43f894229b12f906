"""Sequence scores from token log-probabilities, and per-segment pooling for packed rows.

A sequence score is s(x, y) = (1/T^ℓ)·Σ_t log p(y_t | x, y_<t): the summed log-probability of the
response tokens (ℓ = 0) or its per-token mean (ℓ = 1, ``length_normalize=True``).

Memory: the log-probability of a target is ``z[y] − logsumexp(z)``. Only the positions that are
scored are gathered (a packed row's context and padding are skipped) and upcast to float32, so
autograd keeps at most that ``(scored tokens, V)`` slice — no full ``log_softmax`` copy of the logits.
"""

from __future__ import annotations

import torch

from losscraft.functional.linear_head import LinearHead


def token_logprobs(logits: torch.Tensor | LinearHead, targets: torch.Tensor,
                   where: torch.Tensor | None = None) -> torch.Tensor:
    """``log softmax(logits)[targets]`` at the positions in ``where``, 0 elsewhere.

    Args:
        logits: ``(..., V)``; ``logits[..., t, :]`` predicts ``targets[..., t]``.
        targets: ``logits.shape[:-1]`` token ids; negative ids (``-100``) are never scored.
        where: ``logits.shape[:-1]`` bool, positions to score (default: every ``targets >= 0``).

    A `LinearHead` (hidden states + output weight) in place of ``logits`` takes the fused path,
    `losscraft.functional.fused_ce.fused_linear_logprobs` (no ``(n, V)`` slice at all); so do
    `sequence_logprob` and `segment_logprobs`, which call this.

    Returns:
        float32 tensor shaped like ``targets``.
    """
    if isinstance(logits, LinearHead):
        from losscraft.functional.fused_ce import fused_linear_logprobs

        return fused_linear_logprobs(logits, targets, where)
    scored = targets >= 0 if where is None else where.bool() & (targets >= 0)
    picked = logits[scored].float()  # (n, V): only scored positions, in float32
    ids = targets[scored].unsqueeze(-1)
    values = picked.gather(-1, ids).squeeze(-1) - torch.logsumexp(picked, dim=-1)
    out = torch.zeros(targets.shape, dtype=values.dtype, device=values.device)
    return out.masked_scatter(scored, values)


def sequence_logprob(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, *,
                     length_normalize: bool = False) -> torch.Tensor:
    """Per-sequence score ``Σ_t m_t·log p(y_t)`` (or ``/ Σ_t m_t`` with ``length_normalize``).

    Args:
        logits: ``(B, T, V)``.
        targets: ``(B, T)`` aligned with ``logits`` (``-100`` = nothing predicted).
        mask: ``(B, T)`` token weights (1 on the response tokens to score).
        length_normalize: divide each score by its row's ``Σ_t m_t`` (rows with an empty mask
            score 0).

    Returns:
        ``(B,)`` float32 scores.
    """
    weights = mask.float() * (targets >= 0)
    logp = token_logprobs(logits, targets, weights != 0)
    scores = (logp * weights).sum(-1)
    if length_normalize:
        scores = scores / weights.sum(-1).clamp_min(1e-12)
    return scores


def segment_logprobs(logits: torch.Tensor, targets: torch.Tensor, segment_ids: torch.Tensor,
                     num_segments: int, *, length_normalize: bool = False) -> torch.Tensor:
    """Scores of every response segment of packed rows, from one gather over the logits.

    Args:
        logits: ``(B, T, V)`` from one forward over the packed rows.
        targets: ``(B, T)`` aligned with ``logits``.
        segment_ids: ``(B, T)``: 0 context/padding (not scored), ``k + 1`` → column ``k``
            (the collator's layout: column 0 the positive, column ``k`` negative ``k``).
            Ids above ``num_segments`` are ignored.
        num_segments: number of output columns ``S``.
        length_normalize: mean instead of sum over each segment's tokens.

    Returns:
        ``(B, S)`` float32 scores; a segment with no tokens (a padded negative slot) scores 0.
    """
    segment_ids = segment_ids.long()
    in_range = (segment_ids > 0) & (segment_ids <= num_segments) & (targets >= 0)
    logp = token_logprobs(logits, targets, in_range)
    column = torch.where(in_range, segment_ids, torch.zeros_like(segment_ids))
    shape = (targets.shape[0], num_segments + 1)  # column 0 collects everything unscored
    sums = logp.new_zeros(shape).scatter_add(1, column, logp)[:, 1:]
    if not length_normalize:
        return sums
    counts = logp.new_zeros(shape).scatter_add(1, column, in_range.to(logp.dtype))[:, 1:]
    return sums / counts.clamp_min(1.0)


def segment_mean(values: torch.Tensor, segment_ids: torch.Tensor,
                 num_segments: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of ``values`` over the positions of each segment (e.g. pooled hidden states).

    Args:
        values: ``(B, T, H)``.
        segment_ids: ``(B, T)``: 0 ignored, ``k + 1`` → segment ``k``; ids above
            ``num_segments`` are ignored.
        num_segments: number of segments ``S``.

    Returns:
        ``(means (B, S, H), counts (B, S))``; an empty segment's mean is 0.
    """
    segment_ids = segment_ids.long()
    keep = (segment_ids > 0) & (segment_ids <= num_segments)
    column = torch.where(keep, segment_ids, torch.zeros_like(segment_ids))
    B, _, H = values.shape
    index = column.unsqueeze(-1).expand(-1, -1, H)
    sums = values.new_zeros((B, num_segments + 1, H)).scatter_add(1, index, values)[:, 1:]
    counts = values.new_zeros((B, num_segments + 1)).scatter_add(1, column,
                                                                 keep.to(values.dtype))[:, 1:]
    return sums / counts.clamp_min(1.0).unsqueeze(-1), counts
