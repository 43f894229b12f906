"""N-pair contrastive losses (Sohn 2016) over sequence scores and over embeddings.

Sequence form (methods.md §1.4), per row with positive score s⁺ and negative scores s⁻_j:

    L = log(1 + Σ_j w_j · exp((s⁻_j − s⁺ + m) / τ))

computed as ``logsumexp([0, z_j + log w_j])`` with ``z_j = (s⁻_j − s⁺ + m)/τ`` for stability.
A weight multiplies a negative's term: ``w_j·e^{z_j} = e^{z_j + log w_j}``, i.e. it moves that
negative's margin by ``τ·log w_j`` (w = 2 demands ≈ τ·0.69 more separation; w = 0 drops it).
With one negative, ``τ·L → max(0, m − s⁺ + s⁻)`` as ``τ → 0`` — CLICK's sequence hinge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


def _reduce(per_row: torch.Tensor, counted: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if reduction == "sum":
        return total
    return total / counted.sum().clamp_min(1).to(total.dtype)


def npair_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor,
               neg_mask: torch.Tensor | None = None, *, margin: float = 0.0,
               temperature: float = 1.0, neg_weights: torch.Tensor | None = None,
               reduction: str = "mean") -> torch.Tensor:
    """N-pair loss of one positive against N negatives per row.

    Args:
        pos_scores: ``(B,)`` score of each row's positive (higher = more likely).
        neg_scores: ``(B, N)`` scores of the negatives (``N`` may be 0).
        neg_mask: ``(B, N)`` bool, which negative slots are real (default: all). Padded slots
            have no effect, whatever their score.
        margin: ``m``, how far below the positive a negative must score to stop contributing.
        temperature: ``τ > 0``.
        neg_weights: ``(B, N)`` non-negative weights ``w_j`` (default 1), see the module doc.
        reduction: ``"mean"`` over rows with at least one real negative (rows without one
            contribute nothing), ``"sum"``, or ``"none"`` (``(B,)``, 0 for rows without
            negatives).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if neg_scores.dim() != 2 or pos_scores.shape != neg_scores.shape[:1]:
        raise ValueError(f"expected pos (B,) and neg (B, N), got {tuple(pos_scores.shape)} and "
                         f"{tuple(neg_scores.shape)}")
    valid = (torch.ones_like(neg_scores, dtype=torch.bool) if neg_mask is None
             else neg_mask.bool())
    logits = (neg_scores - pos_scores.unsqueeze(-1) + margin) / temperature
    if neg_weights is not None:
        if (neg_weights < 0).any():
            raise ValueError("neg_weights must be non-negative")
        logits = logits + neg_weights.to(logits.dtype).log()
    logits = logits.masked_fill(~valid, float("-inf"))
    zero = logits.new_zeros(logits.shape[0], 1)  # the "1 +" inside the log
    per_row = torch.logsumexp(torch.cat([zero, logits], dim=-1), dim=-1)
    counted = valid.any(-1)
    per_row = torch.where(counted, per_row, torch.zeros_like(per_row))
    return _reduce(per_row, counted, reduction)


def embedding_npair_loss(anchor: torch.Tensor, positive: torch.Tensor,
                         negatives: torch.Tensor | None = None,
                         neg_mask: torch.Tensor | None = None, *, temperature: float = 0.1,
                         in_batch: bool = True, reduction: str = "mean") -> torch.Tensor:
    """InfoNCE-style n-pair loss on embeddings with cosine similarity / τ.

    Row ``b`` is cross-entropy of picking ``positive[b]`` for ``anchor[b]`` among the candidates
    ``positive[b]``, the row's own ``negatives[b, j]`` and (``in_batch``) every other row's
    positive: ``−log e^{c(a,p⁺)/τ} / Σ_candidates e^{c(a,·)/τ}`` with ``c`` the cosine.

    Args:
        anchor: ``(B, H)`` (e.g. the pooled context).
        positive: ``(B, H)``.
        negatives: ``(B, N, H)`` or None.
        neg_mask: ``(B, N)`` bool, real negative slots (default: all).
        temperature: ``τ > 0``.
        in_batch: use the other rows' positives as extra negatives.
        reduction: ``"mean"`` over rows, ``"sum"`` or ``"none"`` (``(B,)``).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    a = F.normalize(anchor.float(), dim=-1)
    p = F.normalize(positive.float(), dim=-1)
    if in_batch:
        candidates = a @ p.T  # (B, B): diagonal = own positive
        target = torch.arange(a.shape[0], device=a.device)
    else:
        candidates = (a * p).sum(-1, keepdim=True)
        target = torch.zeros(a.shape[0], dtype=torch.long, device=a.device)
    if negatives is not None and negatives.shape[1] > 0:
        n = F.normalize(negatives.float(), dim=-1)
        neg = torch.einsum("bh,bnh->bn", a, n)
        if neg_mask is not None:
            neg = neg.masked_fill(~neg_mask.bool(), float("-inf"))
        candidates = torch.cat([candidates, neg], dim=-1)
    per_row = F.cross_entropy(candidates / temperature, target, reduction="none")
    return _reduce(per_row, torch.ones_like(per_row, dtype=torch.bool), reduction)
