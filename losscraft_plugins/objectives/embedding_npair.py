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
value is still normalised by the optimizer step's row count. In a data-parallel run each rank
holds a shard of the micro-batch; ``gather_across_ranks = true`` makes every rank's positives
candidates for every row (the global micro-batch, as one process would see it), with the
gradient flowing into each rank's own embeddings (`losscraft.distributed.gather_rows`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from losscraft import LossOutput, RecipeError, StepContext, StepMean, distributed, hookimpl
from losscraft.functional import embedding_npair_loss, segment_mean


def pooling_ids(segment_ids: torch.Tensor) -> torch.Tensor:
    """Per input position: 1 context, ``k + 2`` response segment ``k`` (0 = positive), 0 other."""
    response = F.pad(segment_ids[:, :-1], (1, 0))  # the segment each input token belongs to
    before_first = F.pad((segment_ids[:, :-1] > 0).long().cumsum(1), (1, 0)) == 0
    return torch.where(before_first, torch.ones_like(response),
                       torch.where(response > 0, response + 1, torch.zeros_like(response)))


#: The step's rows, one anchor each.
per_anchor = StepMean("embedding_npair_rows", lambda b: b.input_ids.shape[0])


class EmbeddingNPairLoss:
    """Contrastive (InfoNCE / n-pair) loss on mean-pooled last hidden states.

    Args:
        temperature: ``τ > 0`` dividing the cosine similarities.
        in_batch_negatives: use the other rows' positives as extra negatives.
        gather_across_ranks: in a data-parallel run, take the in-batch negatives from every
            rank's shard of the micro-batch, not only this rank's (off by default; no effect in
            one process). The gradient is then exactly that of one process on the global
            micro-batch: each rank also adds the other ranks' rows with value 0 and the
            gradient they send into its own positives.
    """

    requires = frozenset({"hidden_states", "negatives"})

    def __init__(self, temperature: float = 0.1, in_batch_negatives: bool = True,
                 gather_across_ranks: bool = False):
        if not temperature > 0:
            raise RecipeError(f"temperature must be > 0, got {temperature}", key="temperature")
        if not isinstance(gather_across_ranks, bool):
            raise RecipeError(f"expected true or false, got {gather_across_ranks!r}",
                              key="gather_across_ranks")
        self.temperature = float(temperature)
        self.in_batch_negatives = bool(in_batch_negatives)
        self.gather_across_ranks = gather_across_ranks

    def __call__(self, ctx: StepContext) -> LossOutput:
        batch = ctx.batch
        n = batch.num_negatives
        pooled, _ = segment_mean(ctx.hidden_states.float(), pooling_ids(batch.segment_ids), n + 2)
        anchor, positive, negatives = pooled[:, 0], pooled[:, 1], pooled[:, 2:]
        if self.gather_across_ranks and self.in_batch_negatives and distributed.active():
            total = self._across_ranks(anchor, positive, negatives, batch.negative_mask)
        else:
            total = embedding_npair_loss(
                anchor, positive, negatives, batch.negative_mask, temperature=self.temperature,
                in_batch=self.in_batch_negatives, reduction="none").sum()
        value = per_anchor(ctx, total)
        with torch.no_grad():
            pos_sim = F.cosine_similarity(anchor, positive, dim=-1)
            metrics: dict[str, float | torch.Tensor] = {"pos_cosine": pos_sim.mean()}
            valid = batch.negative_mask.bool()
            if valid.any():
                neg_sim = F.cosine_similarity(anchor.unsqueeze(1), negatives, dim=-1)
                metrics["neg_cosine"] = neg_sim[valid].mean()
                metrics["accuracy"] = (neg_sim < pos_sim.unsqueeze(-1))[valid].float().mean()
        return LossOutput(value, metrics)

    def _across_ranks(self, anchor, positive, negatives, mask) -> torch.Tensor:
        """This rank's rows' losses against every rank's positives, plus the other ranks' rows
        as value-0 terms whose gradient reaches this rank's positives (their negatives there)."""
        gathered = [distributed.gather_rows(t)
                    for t in (anchor, positive, negatives, mask.bool())]
        (a, start), (p, _), (n, _), (m, _) = gathered
        per_row = embedding_npair_loss(a, p, n, m, temperature=self.temperature, in_batch=True,
                                       reduction="none")
        mine = torch.zeros_like(per_row, dtype=torch.bool)
        mine[start:start + anchor.shape[0]] = True
        others = per_row[~mine].sum()
        return per_row[mine].sum() + (others - others.detach())


@hookimpl
def register_objectives(register):
    register("embedding_npair", EmbeddingNPairLoss)
