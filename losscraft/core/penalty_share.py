"""How much of an optimizer step the gradient-norm penalty moves: its share.

For a term ``λ·‖g‖²`` (`losscraft.core.penalty.GradientNormPenalty` under a `Term` of weight
``λ``) the share is ``‖∇(λ‖g‖²)‖ / ‖∇(rest of the objective)‖``. Both gradients exist in the
step: the penalty computes its own ``2·H·g`` explicitly (finite difference, ``torch.func``) and
`record`s it in the step's ``step_state``; after the step's backward, the parameters' ``.grad``
holds the whole objective's gradient, so the rest is ``.grad − λ·2·H·g``. `step_metrics` turns
that into the logged numbers, per penalty term ``<name>``:

- ``<name>/share``: the ratio above (a share of 10⁻⁶ means the penalty is noise next to the rest);
- ``<name>/grad_norm_penalty``: ``‖∇(λ‖g‖²)‖``; ``<name>/grad_norm_rest``: ``‖∇(rest)‖``;
- ``<name>/weighted``: ``λ·‖g‖²``, the penalty's value in the objective (``<name>`` itself is the
  unweighted ``‖g‖²``).

Not computed where the penalty's gradient is never formed on its own: the exact method's
reverse-over-reverse routes (it is part of the trainer's single backward) and a sharded model.
Data parallel: each rank's ``2·H·g`` is summed over the ranks first (``engine``), as the
gradients are, so every rank logs the global batch's share.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

#: ``step_state`` key: {id(penalty): {parameter name: Σ_m 2·H_m·g}}
GRADIENTS = "penalty_gradients"


def record(step_state: dict[str, Any], owner: object, grads: dict[str, torch.Tensor]) -> None:
    """Add this micro-batch's ``2·H_m·g`` (copied: the caller hands its tensors to autograd)."""
    mine = step_state.setdefault(GRADIENTS, {}).setdefault(id(owner), {})
    for name, grad in grads.items():
        if name in mine:
            mine[name].add_(grad)
        else:
            mine[name] = grad.detach().to(torch.promote_types(grad.dtype, torch.float32),
                                          copy=True)


def step_metrics(objective: Any, model: nn.Module, step_state: dict[str, Any],
                 metrics: dict[str, float], engine: Any = None) -> dict[str, float]:
    """The share metrics of every penalty term of ``objective`` that recorded its gradient this
    step (see the module doc); call after the step's last backward, before clipping. With a
    data-parallel ``engine`` this is a collective (every rank records the same penalties)."""
    recorded = step_state.get(GRADIENTS)
    if not recorded:
        return {}
    if engine is not None and engine.data_parallel:
        recorded = {key: engine.all_reduce_tensors(hg) for key, hg in recorded.items()}
    params = dict(model.named_parameters())
    out: dict[str, float] = {}
    for term in getattr(objective, "terms", ()):
        hg = recorded.get(id(term.loss))
        if hg is None:
            continue
        weight = float(term.weight)
        pen_sq = rest_sq = 0.0
        for name, value in hg.items():
            grad = params[name].grad
            pen = value * weight
            rest = -pen if grad is None else grad.to(pen.dtype) - pen
            pen_sq += float(pen.double().square().sum())
            rest_sq += float(rest.double().square().sum())
        pen_norm, rest_norm = math.sqrt(pen_sq), math.sqrt(rest_sq)
        out[f"{term.name}/grad_norm_penalty"] = pen_norm
        out[f"{term.name}/grad_norm_rest"] = rest_norm
        out[f"{term.name}/share"] = pen_norm / rest_norm if rest_norm > 0 else math.inf
        if term.name in metrics:
            out[f"{term.name}/weighted"] = weight * float(metrics[term.name])
    return out
