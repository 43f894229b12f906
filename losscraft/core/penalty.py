"""`GradientNormPenalty`: ``‖∇_θ L‖²`` of a loss term, the flatness regulariser of FlatGD.

Its gradient is ``∇_θ ‖∇_θ L‖² = 2·H·g`` (``g = ∇_θ L``, ``H`` the Hessian of ``L``), a
Hessian-vector product. Two ways to get it:

- ``method="exact"``: ``torch.func`` — ``grad`` of the term re-evaluated through
  ``functional_call`` (`StepContext.with_params`), then ``vjp`` of that gradient function at
  ``g`` (reverse-over-reverse; ``gᵀH = Hg`` as ``H`` is symmetric). One extra forward and a
  double backward; needs every op to support double backward (eager attention, no gradient
  checkpointing — checked and fixed by `ensure_double_backward` on first use).
- ``method="finite_difference"`` (Zhao et al. 2022, SAM-style):
  ``H·g ≈ (∇L(θ + r·g/‖g‖) − ∇L(θ))·‖g‖/r``. ``∇L(θ)`` comes from the step's shared forward,
  ``∇L(θ + r·ĝ)`` from one forward/backward at perturbed parameters; no double backward, so
  fused kernels are fine. The error is O(r·‖g‖): see tests/test_penalty.py for measured values.

The returned value is a surrogate: it *equals* ``‖g‖²`` and its gradient w.r.t. the trainable
parameters *is* ``2·H·g``, so the trainer's plain ``backward()`` on the total objective applies
the penalty. The weight λ belongs to the surrounding `Term`.

Gradient accumulation: the penalty is computed per micro-batch. With M micro-batches per
optimizer step, the step minimises ``Σ_m ‖∇L_m‖²`` (``L_m`` the term on micro-batch ``m``,
normalised by the whole step's count), not ``‖∇ Σ_m L_m‖²``; the two agree for M = 1. Dropout
makes the two finite-difference passes see different masks: switch it off for this penalty.
Terms that sample (CRINGE) see fresh samples in every pass.
"""

from __future__ import annotations

import torch

from losscraft.core.context import StepContext
from losscraft.core.double_backward import ensure_double_backward
from losscraft.core.loss import Loss, LossOutput, loss_experts, loss_requires
from losscraft.errors import RecipeError

METHODS = ("exact", "finite_difference")


class GradientNormPenalty:
    """``‖∇_θ term‖²`` as a loss whose gradient is ``2·H·g``.

    Args:
        term: the loss whose gradient norm is penalised (e.g. the safety loss).
        method: ``"exact"`` (torch.func Hessian-vector product) or ``"finite_difference"``.
        radius: the finite-difference step ``r`` (parameter-space distance; ignored by exact).
        switch_attention: for ``"exact"``, switch a model with fused attention or gradient
            checkpointing to eager / no checkpointing (logged) instead of raising `ModelError`.

    Metrics: ``grad_norm`` (``‖g‖``), ``penalty`` (``‖g‖²``), ``term`` (the term's value).
    """

    def __init__(self, term: Loss, *, method: str = "exact", radius: float = 1e-2,
                 switch_attention: bool = True):
        if method not in METHODS:
            raise RecipeError(f"method must be one of {METHODS}, got {method!r}", key="method")
        if not radius > 0:
            raise RecipeError(f"radius must be > 0, got {radius!r}", key="radius")
        self.term = term
        self.method = method
        self.radius = float(radius)
        self.switch_attention = switch_attention
        self._checked: set[int] = set()

    @property
    def requires(self) -> frozenset[str]:
        return loss_requires(self.term)

    @property
    def experts(self) -> tuple[str, ...]:
        return loss_experts(self.term)

    def __call__(self, ctx: StepContext) -> LossOutput:
        params = ctx.trainable_params()
        if not params:  # nothing is trained: the penalty is a constant
            zero = torch.zeros(())
            return LossOutput(zero, {"grad_norm": zero, "penalty": zero, "term": zero})
        if self.method == "exact":
            g, hg, term_value = self._exact(ctx, params)
        else:
            g, hg, term_value = self._finite_difference(ctx, params)
        sq_norm = _dot(g, g)
        # value == ‖g‖² and ∂value/∂p == 2·Hg for every trainable tensor p.
        link = sum(((2.0 * hg[n]).to(p.dtype) * p).sum() for n, p in params.items())
        value = sq_norm + (link - link.detach()).to(sq_norm.dtype)
        return LossOutput(value, {"grad_norm": sq_norm.sqrt(), "penalty": sq_norm,
                                  "term": term_value})

    # ------------------------------------------------------------------ exact
    def _exact(self, ctx: StepContext, params: dict[str, torch.Tensor]):
        if id(ctx.model) not in self._checked:
            ensure_double_backward(ctx.model, switch=self.switch_attention)
            self._checked.add(id(ctx.model))
        primals = {n: p.detach() for n, p in params.items()}

        def term_at(theta):
            value = self.term(ctx.with_params(theta)).value
            return value, value.detach()

        grad_fn = torch.func.grad(term_at, has_aux=True)
        g, vjp_fn, term_value = torch.func.vjp(grad_fn, primals, has_aux=True)
        (hg,) = vjp_fn(g)
        return _detach(g), _detach(hg), term_value

    # ------------------------------------------------------------------ finite difference
    def _finite_difference(self, ctx: StepContext, params: dict[str, torch.Tensor]):
        names = list(params)
        value = self.term(ctx).value
        g = _grad(value, [params[n] for n in names], names)
        norm = _dot(g, g).sqrt()
        if norm.item() == 0.0:
            return g, {n: torch.zeros_like(t) for n, t in g.items()}, value.detach()
        step = self.radius / norm
        shifted = {n: (params[n].detach() + step * g[n]).requires_grad_(True) for n in names}
        value2 = self.term(ctx.with_params(shifted)).value
        g2 = _grad(value2, [shifted[n] for n in names], names, retain_graph=False)
        hg = {n: (g2[n] - g[n]) / step for n in names}
        return g, hg, value.detach()


def _grad(value: torch.Tensor, tensors: list[torch.Tensor], names: list[str], *,
          retain_graph: bool = True) -> dict[str, torch.Tensor]:
    """``∂value/∂tensors`` by name (zeros where unused), detached. Keeps the graph by default:
    the step's shared forward is still needed by the trainer's backward."""
    if not value.requires_grad:
        return {n: torch.zeros_like(t) for n, t in zip(names, tensors)}
    grads = torch.autograd.grad(value, tensors, retain_graph=retain_graph, allow_unused=True)
    return {n: (gr.detach() if gr is not None else torch.zeros_like(t))
            for n, gr, t in zip(names, grads, tensors)}


def _dot(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    dtype = torch.promote_types(next(iter(a.values())).dtype, torch.float32)
    return sum((a[n].to(dtype) * b[n].to(dtype)).sum() for n in a)


def _detach(tree: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.detach() for n, t in tree.items()}
