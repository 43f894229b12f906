"""The ``nll`` objective: language modelling on the positive responses.

This is the smallest complete objective plugin, and the one to copy: a class whose keyword
arguments are the recipe's parameters, a ``__call__`` that reads the shared policy outputs from the
step context and returns a `LossOutput`, and a hook that registers it.
"""

from __future__ import annotations

import math

import torch

from losscraft import LossOutput, RecipeError, StepContext, StepMean, hookimpl
from losscraft.functional import token_nll

ROWS = ("all", "safe", "unsafe", "labelled_safe_or_unknown")


class NLLLoss:
    """Masked token NLL of the positive response, normalised by the optimizer step's token count.

    Args:
        rows: which rows contribute, by the label of their response: ``"all"`` (every reply,
            whatever its label — FlatGD's α·L_LM as written), ``"safe"`` (``is_safe`` true only
            — e.g. BlenderBot_clean, or FlatGD's LM term kept off unsafe replies),
            ``"unsafe"`` (to train a toxic expert) or ``"labelled_safe_or_unknown"``
            (everything not labelled unsafe).
        fused: compute the NLL from the last hidden states and the output weight, chunk by
            chunk (fused linear cross-entropy, `losscraft.functional.fused_ce`): no ``(tokens,
            V)`` logits. Same value and gradient.

    Metrics: ``tokens`` (response tokens counted; summed over the step), ``ppl`` (``exp`` of the
    step's mean NLL; per call, of this micro-batch's).
    """

    def __init__(self, rows: str = "all", fused: bool = False):
        if rows not in ROWS:
            raise RecipeError(f"rows must be one of {', '.join(repr(r) for r in ROWS)}, "
                              f"got {rows!r}", key="rows")
        self.rows = rows
        # the chosen rows' tokens of the whole step; nll terms choosing the same rows share it
        self.per_token = StepMean(f"nll_tokens:{rows}", lambda b: self._mask(b).sum())
        if not isinstance(fused, bool):
            raise RecipeError(f"fused must be true or false, got {fused!r}", key="fused")
        self.fused = fused

    def _mask(self, batch) -> torch.Tensor:
        safe = batch.is_safe
        keep = {
            "all": torch.ones_like(safe, dtype=torch.bool),
            "safe": safe == 1,
            "unsafe": safe == 0,
            "labelled_safe_or_unknown": (safe == 1) | torch.isnan(safe),
        }[self.rows]
        return batch.response_mask * keep.to(batch.response_mask.dtype).unsqueeze(-1)

    def __call__(self, ctx: StepContext) -> LossOutput:
        mask = self._mask(ctx.batch)
        tokens = self.per_token.normalizer(ctx)
        value = token_nll(ctx.head if self.fused else ctx.logits, ctx.batch.targets, mask,
                          normalizer=tokens)
        n = float(mask.sum())
        micro_mean = float(value.detach()) * tokens / n if n else float("nan")
        return LossOutput(value, {"tokens": n, "ppl": _ppl(micro_mean)}, frozenset({"tokens"}))

    def finish_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """``ppl`` of the whole step: the summed value is the step's mean NLL."""
        return {"ppl": _ppl(metrics["value"]) if metrics.get("tokens") else float("nan")}


def _ppl(mean_nll: float) -> float:
    return math.exp(min(mean_nll, 50.0))


@hookimpl
def register_objectives(register):
    register("nll", NLLLoss)
