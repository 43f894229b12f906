"""The finite-difference Hessian-vector product of `GradientNormPenalty`: ``2·H_m·g`` from
gradients of the term at shifted parameters, with no double backward.

Along the step's gradient ``g`` (``h`` a scalar, the shift ``h·g`` has norm ``ρ``):

- ``forward``: ``2·H_m·g ≈ 2·(∇L_m(θ + h·g) − ∇L_m(θ))/h`` — error O(ρ); one forward and one
  backward of the term at ``θ + h·g`` on top of the ones ``g`` needs;
- ``central``: ``2·H_m·g ≈ (∇L_m(θ + h·g) − ∇L_m(θ − h·g))/h`` — error O(ρ²) (the O(ρ) terms
  cancel); one more forward and backward (at ``θ − h·g``).

The shift's norm ``ρ`` is either absolute (``radius``) or relative to the trainable parameters
(``eps``: ``ρ = eps·‖θ‖``, i.e. ``h = eps·‖θ‖/‖g‖``), so the same setting means the same thing
for a LoRA adapter and for all 135M weights. A relative shift below the resolution of the dtype
the forward computes in (bfloat16 weights or autocast: 2⁻⁷ ≈ 7.8·10⁻³) is mostly rounded away —
the difference is then cancellation noise — and is warned about, naming the recipe key.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from losscraft.core.double_backward import uses_gradient_checkpointing

DIFFERENCES = ("central", "forward")

#: forwards + backwards of the term at shifted parameters, per micro-batch
PASSES = {"forward": 1, "central": 2}


def shift_scale(params: dict[str, torch.Tensor], sq_norm_g: torch.Tensor, *,
                radius: float, eps: float | None) -> tuple[float, float]:
    """``(h, ρ/‖θ‖)``: the multiplier of ``g`` in the shift and the shift's norm relative to the
    trainable parameters' (``inf`` when ``‖θ‖ = 0``)."""
    theta = math.sqrt(sum(float(p.detach().double().square().sum()) for p in params.values()))
    return shift_from_norms(theta, math.sqrt(float(sq_norm_g)), radius=radius, eps=eps)


def shift_from_norms(theta: float, norm_g: float, *, radius: float, eps: float | None
                     ) -> tuple[float, float]:
    """`shift_scale` from the norms ``‖θ‖`` and ``‖g‖`` (e.g. all-reduced over a sharded
    model's ranks): the shift's norm is ``eps·‖θ‖``, or ``radius`` without ``eps`` or when
    ``‖θ‖ = 0``."""
    shift = eps * theta if eps is not None and theta > 0 else radius
    relative = shift / theta if theta > 0 else math.inf
    return shift / norm_g, relative


def compute_dtype(params: dict[str, torch.Tensor], autocast_dtype: torch.dtype | None
                  ) -> torch.dtype:
    """The least precise floating dtype the forward sees the parameters in."""
    dtypes = [p.dtype for p in params.values() if p.is_floating_point()]
    if autocast_dtype is not None:
        dtypes.append(autocast_dtype)
    return max(dtypes, key=lambda d: torch.finfo(d).eps)


def resolution_problem(relative: float, dtype: torch.dtype, key: str) -> str | None:
    """The warning when a shift of ``relative``·‖θ‖ is below ``dtype``'s resolution, else
    ``None``. ``key`` names the setting to raise (``...penalty.eps`` or ``.radius``)."""
    resolution = torch.finfo(dtype).eps
    if relative >= resolution:
        return None
    need = 4 * resolution
    return (f"{key}: the finite-difference shift is {relative:.1e} of the parameters' norm, "
            f"below {str(dtype).replace('torch.', '')}'s resolution ({resolution:.1e}): most of "
            f"it is rounded away and H·g is cancellation noise. Raise it (eps ≥ {need:.0e}) or "
            "train in fp32 (run.precision = \"fp32\", float32 trainable weights)")


def warn_resolution(relative: float, dtype: torch.dtype, key: str) -> bool:
    """`warnings.warn` the `resolution_problem`, if any; whether there was one."""
    problem = resolution_problem(relative, dtype, key)
    if problem is not None:
        warnings.warn(problem, RuntimeWarning, stacklevel=3)
    return problem is not None


def shifted_gradient(term: Callable, ctx, params: dict[str, torch.Tensor], names: list[str],
                     h: float, g: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``∇ term`` at ``θ + h·g`` (``h`` may be negative), detached, by name; one forward and one
    backward of the term. Through `StepContext.with_params` (fresh leaf tensors), or, under
    activation checkpointing, by shifting the parameters themselves and restoring them bit for
    bit: a checkpointed backward recomputes the forward from the module's own parameters, which
    substituted tensors no longer are by then. ``.data`` keeps the in-place shift out of
    autograd's version counters, so the step's shared forward graph stays valid."""
    if ctx.params is None and uses_gradient_checkpointing(ctx.model):
        saved = {n: params[n].detach().clone() for n in names}
        try:
            for n in names:
                params[n].data.add_((h * g[n]).to(params[n].dtype))
            value = term(ctx.with_params({})).value
            tensors = [params[n] for n in names]
            return _grads(value, tensors, names)
        finally:
            for n in names:
                params[n].data.copy_(saved[n])
    moved = [g[n] if g[n].dtype == params[n].dtype else g[n].to(params[n].dtype) for n in names]
    shifted = torch._foreach_add([params[n].detach() for n in names], moved, alpha=h)
    for t in shifted:
        t.requires_grad_(True)
    value = term(ctx.with_params(dict(zip(names, shifted)))).value
    return _grads(value, shifted, names)


def hessian_vector(term: Callable, ctx, params: dict[str, torch.Tensor], names: list[str],
                   own: dict[str, torch.Tensor], g: dict[str, torch.Tensor], h: float,
                   difference: str) -> dict[str, torch.Tensor]:
    """``2·H_m·g`` by name, in float32 or wider: ``difference`` as in the module doc; ``own`` is
    ``∇L_m(θ)`` (used by the forward difference only)."""
    plus = shifted_gradient(term, ctx, params, names, h, g)
    if difference == "forward":
        base, factor = own, 2.0 / h
    else:
        base, factor = shifted_gradient(term, ctx, params, names, -h, g), 1.0 / h
    out = {}
    for n in names:
        dtype = torch.promote_types(plus[n].dtype, torch.float32)
        out[n] = plus[n].to(dtype).sub_(base[n].to(dtype)).mul_(factor)
    return out


def _grads(value: torch.Tensor, tensors: list[torch.Tensor], names: list[str]
           ) -> dict[str, torch.Tensor]:
    if not value.requires_grad:
        return {n: torch.zeros_like(t) for n, t in zip(names, tensors)}
    grads = torch.autograd.grad(value, tensors, allow_unused=True)
    return {n: (gr.detach() if gr is not None else torch.zeros_like(t))
            for n, gr, t in zip(names, grads, tensors)}
