"""`gradient_surrogate`: a zero-valued scalar whose gradient w.r.t. given tensors is given;
`zero_with_grad`: one whose gradient is that of a value on a live graph.

A loss term that computes its parameter gradient itself (the gradient-norm penalty's ``2·H·g``)
must still hand the trainer a value to ``backward()`` through. The textbook surrogate
``Σ_p (grad_p · p).sum()`` (minus its detached self) costs three passes over every parameter in
the forward (scale, multiply, sum) and one more in the backward — at 135M parameters on a CPU
that was a quarter of the penalty's time. This one stores the gradients and returns them, scaled
by the incoming gradient (the term's weight), straight to the tensors' accumulators: one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class _Surrogate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grads, scale, in_place, *tensors):
        ctx.grads = grads
        ctx.scale = scale
        ctx.in_place = in_place
        ctx.dtypes = [t.dtype for t in tensors]
        # float32, or the gradients' dtype where wider: the incoming weight is not rounded
        dtype = torch.float32
        for g in grads:
            if g is not None:
                dtype = torch.promote_types(dtype, g.dtype)
        return tensors[0].new_zeros((), dtype=dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grads, ctx.grads = ctx.grads, None  # handed over once; the memory goes with them
        if grads is None:
            raise RuntimeError("a gradient surrogate can be back-propagated only once")
        factor = grad_out * ctx.scale
        out = []
        for g, dtype in zip(grads, ctx.dtypes):
            if g is None:
                out.append(None)
                continue
            # scaled in the gradient's own (wider) dtype
            g = g.mul_(factor.to(g.dtype)) if ctx.in_place else g * factor.to(g.dtype)
            out.append(g if g.dtype == dtype else g.to(dtype))
        return (None, None, None, *out)


def zero_with_grad(value: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """``factor·value`` minus its detached self: 0, with the gradient of ``factor·value`` — the
    surrogate for a gradient autograd can still compute itself (``value`` keeps its graph)."""
    scaled = value * factor
    return scaled - scaled.detach()


def gradient_surrogate(tensors: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
                       scale: float | torch.Tensor = 1.0, *, in_place: bool = True
                       ) -> torch.Tensor:
    """A scalar equal to 0 whose gradient w.r.t. ``tensors[i]`` is ``scale · grads[i]``: float32,
    or the gradients' dtype where wider (float64), so the weight it is scaled by is not rounded.

    Args:
        tensors: the tensors (parameters) the gradient is for; they must require grad.
        grads: one gradient per tensor, same shape (``None``: no gradient). They are scaled
            **in place** during the backward and handed to autograd (no copy), so pass tensors
            nobody else reads afterwards. Cast to each tensor's dtype (after scaling) where it
            differs.
        scale: a factor applied in the same pass (e.g. a finite difference's ``1/step``).
        in_place: ``False`` leaves ``grads`` as they are (the scaled gradients are new tensors),
            for a caller that reads them after the backward.

    Back-propagate it once (its gradients are released by the first backward).
    """
    tensors = list(tensors)
    if len(tensors) != len(grads):
        raise ValueError(f"{len(tensors)} tensors but {len(grads)} gradients")
    if not tensors:
        return torch.zeros(())
    grads = list(grads)
    for g, t in zip(grads, tensors):
        if g is not None and g.shape != t.shape:
            raise ValueError(f"gradient of shape {tuple(g.shape)} for a tensor of shape "
                             f"{tuple(t.shape)}")
    if isinstance(scale, torch.Tensor):
        scale = scale.detach()
    return _Surrogate.apply(grads, scale, in_place, *tensors)
