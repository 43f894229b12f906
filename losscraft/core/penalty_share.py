"""How much of an optimizer step the gradient-norm penalty moves: its share.

For a term ``λ·‖g‖²`` (`losscraft.core.penalty.GradientNormPenalty` under a `Term` of weight
``λ``) the share is ``‖∇(λ‖g‖²)‖ / ‖∇(rest of the objective)‖``. Both gradients exist in the
step: the penalty forms its own ``2·H·g`` explicitly and `record`s it in the step's
``step_state``; after the step's backward, the parameters' ``.grad`` holds the whole
objective's gradient, so the rest is ``.grad − λ·2·H·g``. `step_metrics` turns that into the
logged numbers, per penalty term ``<name>``:

- ``<name>/share``: the ratio above (a share of 10⁻⁶ means the penalty is noise next to the rest);
- ``<name>/grad_norm_penalty``: ``‖∇(λ‖g‖²)‖``; ``<name>/grad_norm_rest``: ``‖∇(rest)‖``;
- ``<name>/weighted``: ``λ·‖g‖²``, the penalty's value in the objective (``<name>`` itself is the
  unweighted ``‖g‖²``).

Every route records it. The finite difference and ``torch.func`` form ``2·H·g`` anyway. The
exact method's reverse-over-reverse routes (``exact_mode`` ``"layerwise"``, ``"autograd"``)
would take it inside the trainer's single backward; on a step that measures the share
(`measured`: the penalty's ``share_every``) `split_carrier` forms it on its own instead — one
more backward through the forward graph (its cost: recipes/flatgd.toml). A sharded (FSDP) model
records each rank's shards of ``2·H·g``; the norms are then sums of squares over each rank's
shards, added up over the ranks. Data parallel: each rank's ``2·H·g`` is summed over the ranks
first (``engine``), as the gradients are, so every rank logs the global batch's share.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from losscraft.core.gradient_surrogate import gradient_surrogate

#: ``step_state`` key: {id(penalty): {parameter name: Σ_m 2·H_m·g}}
GRADIENTS = "penalty_gradients"


def measured(step: int, every: int) -> bool:
    """Whether optimizer step ``step`` (0-based, global) measures the share when it is measured
    every ``every`` steps (``0``: never)."""
    return every > 0 and step % every == 0


def record(step_state: dict[str, Any], owner: object, grads: dict[str, torch.Tensor], *,
           copy: bool = True) -> None:
    """Add this micro-batch's ``2·H_m·g``: copied, as the caller hands its tensors to autograd
    (`gradient_surrogate` scales them in place), unless ``copy=False`` (they are kept as they
    are where at least float32, and added to by later micro-batches)."""
    mine = step_state.setdefault(GRADIENTS, {}).setdefault(id(owner), {})
    for name, grad in grads.items():
        if name in mine:
            mine[name].add_(grad)
        else:
            mine[name] = grad.detach().to(torch.promote_types(grad.dtype, torch.float32),
                                          copy=copy)


def split_carrier(step_state: dict[str, Any], owner: object, carrier: torch.Tensor,
                  tensors: list[torch.Tensor], names: list[str]) -> torch.Tensor:
    """The gradient of a `losscraft.core.double_backward.hessian_vector_carrier` (``2·H_m·g``
    w.r.t. ``tensors``, named ``names``) taken on its own — the double backward; the forward
    graph is kept for the trainer's backward, the first backward's graph goes with the carrier
    — and `record`ed for ``owner``; returns a `gradient_surrogate` with that gradient to hand
    the trainer instead, so the double backward still runs once. The extra cost is the pass back
    through the forward graph that the rest of the objective no longer shares; the recorded
    tensors are the surrogate's own (not scaled in place), so no second copy is held."""
    grads = torch.autograd.grad(carrier, tensors, retain_graph=True, allow_unused=True)
    hg = [torch.zeros_like(t) if g is None else g.detach() for g, t in zip(grads, tensors)]
    record(step_state, owner, dict(zip(names, hg)), copy=False)
    return gradient_surrogate(tensors, hg, in_place=False)


def step_metrics(objective: Any, model: nn.Module, step_state: dict[str, Any],
                 metrics: dict[str, float], engine: Any = None) -> dict[str, float]:
    """The share metrics of every penalty term of ``objective`` that recorded its gradient this
    step (see the module doc); call after the step's last backward, before clipping. With a
    data-parallel or sharding ``engine`` this is a collective (every rank records the same
    penalties)."""
    recorded = step_state.get(GRADIENTS)
    if not recorded:
        return {}
    sharded = engine is not None and engine.sharded(model)
    if engine is not None and engine.data_parallel and not sharded:
        recorded = {key: engine.all_reduce_tensors(hg) for key, hg in recorded.items()}
    params = dict(model.named_parameters())
    out: dict[str, float] = {}
    for term in getattr(objective, "terms", ()):
        hg = recorded.get(id(term.loss))
        if hg is None:
            continue
        weight = float(term.weight)
        pen_sq, rest_sq = _squares(hg, params, weight)
        if sharded:  # each rank holds its own shards: the sums of squares add up over ranks
            pen_sq, rest_sq = engine.all_reduce_sum(pen_sq), engine.all_reduce_sum(rest_sq)
        pen_norm, rest_norm = math.sqrt(pen_sq), math.sqrt(rest_sq)
        out[f"{term.name}/grad_norm_penalty"] = pen_norm
        out[f"{term.name}/grad_norm_rest"] = rest_norm
        out[f"{term.name}/share"] = pen_norm / rest_norm if rest_norm > 0 else math.inf
        if term.name in metrics:
            out[f"{term.name}/weighted"] = weight * float(metrics[term.name])
    return out


def _squares(hg: dict[str, torch.Tensor], params: dict[str, torch.Tensor], weight: float
             ) -> tuple[float, float]:
    """``(‖λ·2·H·g‖², ‖.grad − λ·2·H·g‖²)`` over the tensors this process holds."""
    pen_sq = rest_sq = 0.0
    for name, value in hg.items():
        grad = params[name].grad
        # a sharded parameter's .grad is a DTensor: this rank's shard, as recorded
        grad = grad.to_local() if hasattr(grad, "to_local") else grad
        pen = value * weight
        rest = -pen if grad is None else grad.to(pen.dtype) - pen
        pen_sq += float(pen.double().square().sum())
        rest_sq += float(rest.double().square().sum())
    return pen_sq, rest_sq
