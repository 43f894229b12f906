"""The ``embedding_npair`` objective: the n-pair contrast on pooled hidden states (methods.md §1.4).

Instead of sequence log-probabilities, each packed segment is represented by the mean of the
policy's last hidden states over its tokens: the anchor is the pooled context, the candidates are
the pooled positive, the row's negatives and (by default) the other rows' positives. The loss is
cross-entropy over cosine similarities / τ (`losscraft.functional.embedding_npair_loss`).

Pooling in a packed row (see `losscraft.data.collate`): a response segment's *input* tokens are
the positions right after its targets' positions, i.e. where ``segment_ids`` shifted right by one
equals ``k + 1``; the context is everything up to and including the first segment's copy of the
last context token. The states of a response see the context (causal attention), so the
embedding is "this reply in this context".

Under gradient accumulation the in-batch negatives come from the current micro-batch only; the
value is still normalised by the optimizer step's row count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscraft import LossOutput, RecipeError, StepContext, hookimpl
from losscraft.functional import embedding_npair_loss, segment_mean


def pooling_ids(segment_ids: torch.Tensor) -> torch.Tensor:
    """Per input position: 1 context, ``k + 2`` response segment ``k`` (0 = positive), 0 other."""
    response = F.pad(segment_ids[:, :-1], (1, 0))  # the segment each input token belongs to
    before_first = F.pad((segment_ids[:, :-1] > 0).long().cumsum(1), (1, 0)) == 0
    return torch.where(before_first, torch.ones_like(response),
                       torch.where(response > 0, response + 1, torch.zeros_like(response)))


class EmbeddingNPairLoss:
    """Contrastive (InfoNCE / n-pair) loss on mean-pooled last hidden states.

    Args:
        temperature: ``τ > 0`` dividing the cosine similarities.
        in_batch_negatives: use the other rows' positives as extra negatives.
    """

    requires = frozenset({"hidden_states", "negatives"})

    def __init__(self, temperature: float = 0.1, in_batch_negatives: bool = True):
        if not temperature > 0:
            raise RecipeError(f"temperature must be > 0, got {temperature}", key="temperature")
        self.temperature = float(temperature)
        self.in_batch_negatives = bool(in_batch_negatives)

    def __call__(self, ctx: StepContext) -> LossOutput:
        batch = ctx.batch
        n = batch.num_negatives
        pooled, _ = segment_mean(ctx.hidden_states.float(), pooling_ids(batch.segment_ids), n + 2)
        anchor, positive, negatives = pooled[:, 0], pooled[:, 1], pooled[:, 2:]
        per_row = embedding_npair_loss(
            anchor, positive, negatives, batch.negative_mask, temperature=self.temperature,
            in_batch=self.in_batch_negatives, reduction="none")
        rows = ctx.step_sum("embedding_npair_rows", lambda b: b.input_ids.shape[0])
        with torch.no_grad():
            pos_sim = F.cosine_similarity(anchor, positive, dim=-1)
            metrics: dict[str, float | torch.Tensor] = {"pos_cosine": pos_sim.mean()}
            valid = batch.negative_mask.bool()
            if valid.any():
                neg_sim = F.cosine_similarity(anchor.unsqueeze(1), negatives, dim=-1)
                metrics["neg_cosine"] = neg_sim[valid].mean()
                metrics["accuracy"] = (neg_sim < pos_sim.unsqueeze(-1))[valid].float().mean()
        return LossOutput(per_row.sum() / rows, metrics)


@hookimpl
def register_objectives(register):
    register("embedding_npair", EmbeddingNPairLoss)
