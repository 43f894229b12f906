"""Peer implementations for ``losscraft bench --peers``: the libraries a user would otherwise pick,
on the bench's own shapes, each checked against losscraft's value after a documented
normalisation. Every peer is optional (the ``[peers]`` extra); one that does not import is left
out of the grid.

- ``js:liger`` / ``js:liger_eager`` — Liger-Kernel's chunked-loss `LigerFusedLinearJSDLoss`
  (plain torch, so CPU too; ``torch.compile``'d by Liger's default, or eager), from hidden
  states. Normalisation: ``beta = 0.5`` (the symmetric JS, nats), ``weight_hard_loss = 0``
  (no cross-entropy term), positions outside the response mask get label ``-100`` (Liger then
  divides by the unmasked count), one call per expert, summed: equals ``js`` (``Σ_k JS_k``,
  masked mean).
- ``js:trl`` — TRL's ``GKDTrainer.generalized_jsd_loss`` on the logits, ``beta = 0.5``,
  ``reduction = "batchmean"`` with labels ``-100`` outside the mask, one call per expert:
  equals ``js``.
- ``npair:pml`` — pytorch-metric-learning's ``NPairsLoss`` with ``DotProductSimilarity`` on
  ``normalize(x) / √τ`` (so the similarity is cosine / τ), anchors and positives stacked with
  labels ``0..n−1`` twice: equals ``npair:losscraft`` = `embedding_npair_loss` (in-batch,
  τ = 0.1), both on the first and second half of the policy's hidden-state rows.
- Liger's CUDA kernels (``safety_loss:liger`` / ``liger_fused``) stay in `losscraft.bench.
  impls`; they appear where CUDA and Liger are present.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F

from losscraft.core.loss import LossOutput
from losscraft.functional.npair import embedding_npair_loss

#: Distribution names of the peers (what ``pip install losscraft[peers]`` installs).
PACKAGES = {"liger": "liger-kernel", "trl": "trl", "pml": "pytorch-metric-learning"}
_MODULES = {"liger": "liger_kernel", "trl": "trl", "pml": "pytorch_metric_learning"}
#: Temperature of the n-pair heads.
NPAIR_TEMPERATURE = 0.1


def installed(peer: str) -> bool:
    """Whether the peer's package can be imported here."""
    return importlib.util.find_spec(_MODULES[peer]) is not None


def _labels(mask: torch.Tensor) -> torch.Tensor:
    """``0`` where scored, ``-100`` (the peers' ignore index) elsewhere, flattened."""
    return torch.where(mask.reshape(-1) > 0, 0, -100).long()


class LigerChunkedJS:
    """``Σ_k JS(policy, expert_k)`` through Liger's chunked-loss fused linear JSD."""

    def __init__(self, names: tuple[str, ...], *, compiled: bool):
        from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss
        self.experts = names
        self.jsd = LigerFusedLinearJSDLoss(weight_hard_loss=0.0, weight_soft_loss=1.0, beta=0.5,
                                           compiled=compiled)

    def __call__(self, ctx) -> LossOutput:
        head = ctx.head
        h = head.hidden.reshape(-1, head.hidden.shape[-1])
        labels = _labels(ctx.batch.response_mask).to(h.device)
        total = 0.0
        for name in self.experts:
            e = ctx.expert_head(name)
            total = total + self.jsd(h, head.weight, e.hidden.reshape(-1, h.shape[-1]),
                                     e.weight, labels, head.bias, e.bias)
        return LossOutput(total)


class TrlJS:
    """``Σ_k JS(policy, expert_k)`` through TRL's ``generalized_jsd_loss`` on the logits."""

    def __init__(self, names: tuple[str, ...]):
        import os
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
        from trl.experimental.gkd.gkd_trainer import GKDTrainer
        self.loss = GKDTrainer.generalized_jsd_loss
        self.experts = names

    def __call__(self, ctx) -> LossOutput:
        logits = ctx.logits
        labels = _labels(ctx.batch.response_mask).reshape(ctx.batch.response_mask.shape)
        total = 0.0
        for name in self.experts:
            total = total + self.loss(logits, ctx.expert_logits(name), labels.to(logits.device),
                                      beta=0.5, reduction="batchmean")
        return LossOutput(total)


def _pairs(ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors and positives: the first and second half of the policy's hidden-state rows."""
    rows = ctx.head.hidden.reshape(-1, ctx.head.hidden.shape[-1])
    n = rows.shape[0] // 2
    if n < 2:
        raise ValueError("the n-pair heads need at least 4 positions")
    return rows[:n], rows[n:2 * n]


class NPairHead:
    """In-batch n-pair loss on embeddings: ``variant`` ``"losscraft"`` (`embedding_npair_loss`)
    or ``"pml"`` (pytorch-metric-learning's ``NPairsLoss``, normalised as in the module doc)."""

    experts: tuple[str, ...] = ()

    def __init__(self, variant: str):
        self.variant = variant
        if variant == "pml":
            from pytorch_metric_learning.distances import DotProductSimilarity
            from pytorch_metric_learning.losses import NPairsLoss
            self.loss = NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))

    def __call__(self, ctx) -> LossOutput:
        a, p = _pairs(ctx)
        if self.variant == "losscraft":
            return LossOutput(embedding_npair_loss(a, p, temperature=NPAIR_TEMPERATURE))
        scale = 1.0 / math.sqrt(NPAIR_TEMPERATURE)
        emb = torch.cat([F.normalize(a.float(), dim=-1), F.normalize(p.float(), dim=-1)]) * scale
        labels = torch.arange(a.shape[0], device=a.device).repeat(2)
        return LossOutput(self.loss(emb, labels))
