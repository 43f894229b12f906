"""Can this model be differentiated twice? Detect and fix what breaks double backward.

The exact gradient-norm penalty differentiates the gradient (a Hessian-vector product by
reverse over reverse, or through ``torch.func``). Fused attention kernels (PyTorch SDPA's flash /
memory-efficient backends, FlashAttention, flex attention) have no double backward, and
activation (gradient) checkpointing re-runs forwards in ways ``torch.func`` transforms cannot
follow (and the penalty's layer wrappers, `losscraft.core.layerwise_double_backward`, would run
on the recomputed forwards). Eager attention without checkpointing works everywhere; the
finite-difference penalty works with either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from torch import nn

from losscraft.core.gradient_surrogate import zero_with_grad
from losscraft.errors import ModelError

_logger = logging.getLogger(__name__)

#: Attention implementations whose kernels support double backward.
DOUBLE_BACKWARD_ATTENTION = frozenset({"eager"})


def _config(model: nn.Module):
    return getattr(model, "config", None)


def attention_implementation(model: nn.Module) -> str | None:
    """The Hugging Face attention implementation in use (``"eager"``, ``"sdpa"``, ...), or
    ``None`` when the model has no such setting."""
    config = _config(model)
    return getattr(config, "_attn_implementation", None) if config is not None else None


def uses_gradient_checkpointing(model: nn.Module) -> bool:
    """Whether activation (gradient) checkpointing is switched on."""
    # Module flags, not `model.is_gradient_checkpointing` (deprecated in transformers 5).
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def check_double_backward(model: nn.Module) -> list[str]:
    """What stops ``model`` from being differentiated twice; an empty list when nothing does."""
    problems = []
    impl = attention_implementation(model)
    if impl is not None and impl not in DOUBLE_BACKWARD_ATTENTION:
        problems.append(f"attention implementation '{impl}' has no double backward "
                        "(use attn_implementation='eager')")
    if uses_gradient_checkpointing(model):
        problems.append("gradient checkpointing is on; torch.func cannot differentiate twice "
                        "through it (disable activation checkpointing)")
    return problems


def ensure_double_backward(model: nn.Module, *, switch: bool = True,
                           log: Callable[[str], None] | None = None) -> nn.Module:
    """Make ``model`` support double backward, or raise `ModelError` saying what to change.

    Args:
        model: a Hugging Face model (a PEFT wrapper forwards ``config`` and the methods used).
        switch: fix what can be fixed — switch attention to ``"eager"`` (same results, more
            memory for long sequences) and turn gradient checkpointing off — with a notice
            through ``log``. If ``False``, raise instead.
        log: where notices go (default: this module's logger, at warning level).

    Returns:
        ``model`` (changed in place).
    """
    problems = check_double_backward(model)
    if not problems:
        return model
    if not switch:
        raise ModelError("the exact gradient penalty needs double backward, but "
                         + "; ".join(problems)
                         + ". Or use the penalty's method='finite_difference', which needs none.")
    notify = log or _logger.warning
    impl = attention_implementation(model)
    if impl is not None and impl not in DOUBLE_BACKWARD_ATTENTION:
        setter = getattr(model, "set_attn_implementation", None)
        try:
            if setter is not None:
                setter("eager")
            else:
                _config(model)._attn_implementation = "eager"
        except Exception as exc:  # noqa: BLE001 - re-raised as a clear ModelError
            raise ModelError(f"cannot switch attention from '{impl}' to 'eager' for the exact "
                             f"gradient penalty ({exc}); load the model with "
                             "attn_implementation='eager' or use method='finite_difference'"
                             ) from exc
        notify(f"exact gradient penalty: switched attention from '{impl}' to 'eager' "
               "(fused attention kernels have no double backward)")
    if uses_gradient_checkpointing(model):
        # transformers 5 renamed it activation_checkpointing_disable; older versions lack that.
        disable = (getattr(model, "activation_checkpointing_disable", None)
                   or model.gradient_checkpointing_disable)
        disable()
        notify("exact gradient penalty: turned gradient checkpointing off (torch.func cannot "
               "differentiate twice through it); memory use will grow")
    left = check_double_backward(model)
    if left:
        raise ModelError("the exact gradient penalty needs double backward, but "
                         + "; ".join(left) + ". Use method='finite_difference' instead.")
    return model


def hessian_vector_carrier(value, tensors: list, tangent: list | None = None, *,
                           scale: float = 1.0):
    """``(∇value, carrier)``: reverse over reverse whose second backward is the caller's own.

    ``∇value`` is taken with ``create_graph=True`` (detached copies are returned); ``carrier`` is
    ``scale·(∇value · v)`` minus its detached self — zero, with gradient ``scale·H·v`` w.r.t.
    ``tensors`` (``v = tangent``, default the gradient itself). Added to a loss, the caller's
    single ``backward()`` differentiates it together with everything else: the pass back
    through the forward graph that a separate Hessian-vector product (``autograd.grad`` of the
    carrier) would make is shared with the loss's own; where ``scale·H·v`` itself is wanted
    (the penalty's share), `losscraft.core.penalty_share.split_carrier` pays for that pass. The
    first backward's graph is held until then. ``carrier`` is ``None`` when ``value`` does not
    depend on ``tensors`` (``H = 0``)."""
    import torch

    if not value.requires_grad:
        return [torch.zeros_like(t) for t in tensors], None
    grads = torch.autograd.grad(value, tensors, create_graph=True, allow_unused=True)
    own = [torch.zeros_like(t) if g is None else g.detach() for g, t in zip(grads, tensors)]
    vec = own if tangent is None else tangent
    dot = None
    for g, v in zip(grads, vec):
        if g is None or not g.requires_grad:
            continue
        part = (g * v.to(g.dtype)).sum()
        dot = part if dot is None else dot + part
    return own, (None if dot is None else zero_with_grad(dot, scale))
