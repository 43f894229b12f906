"""What a loss term returns is checked in one place.

`term_problem` says what is wrong with a term's output before it reaches autograd: not a
`LossOutput`, a value that is not a tensor, not a scalar, or not connected to the graph while
gradients are on (a non-zero constant: computed from detached tensors, or under ``no_grad``).
`nonfinite` says whether a value is NaN/inf — the trainer's non-finite guard
(`losscraft.trainer.finite`) uses it on every recorded loss and term before the optimizer step.
`WeightedObjective` raises `LossValueError` naming the term; the trainer adds the stage and step.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from losscraft.core.loss import LossOutput
from losscraft.errors import LossValueError

__all__ = ["LossValueError", "check_term_output", "nonfinite", "term_problem"]


def nonfinite(value: float) -> str | None:
    """``"nan"`` or ``"inf"`` for a non-finite number, else ``None``."""
    if math.isnan(value):
        return "nan"
    return "inf" if math.isinf(value) else None


def term_problem(out: Any, *, grad_expected: bool) -> str | None:
    """What is wrong with a term's return value ``out``, or ``None``.

    ``grad_expected``: gradients are enabled and the model has trainable parameters, so a
    non-zero value must be connected to the graph (a constant zero is fine: a term with nothing
    to do in this micro-batch)."""
    if not isinstance(out, LossOutput):
        return (f"returned {type(out).__name__}, expected LossOutput(value, metrics) "
                "(losscraft.LossOutput)")
    value = out.value
    if not torch.is_tensor(value):
        return (f"returned a value of type {type(value).__name__}, expected a 0-d tensor "
                "computed from ctx.logits / ctx.hidden_states")
    if value.dim() != 0:
        return (f"returned a non-scalar value of shape {tuple(value.shape)}; reduce it to one "
                "number (e.g. .sum() / ctx.step_sum(...))")
    if not (value.is_floating_point() or value.is_complex()):
        return f"returned a {value.dtype} value, expected a floating-point tensor"
    if grad_expected and not value.requires_grad:
        number = float(value.detach().float())
        if number != 0.0 and nonfinite(number) is None:
            return ("returned a value that is not connected to the graph (it does not require "
                    "grad): was it computed from detached tensors, .item(), or under no_grad?")
    return None


def check_term_output(name: str, out: Any, *, step: int | None = None,
                      grad_expected: bool = True) -> None:
    """Raise `LossValueError` naming term ``name`` (and ``step``) when `term_problem` finds one."""
    problem = term_problem(out, grad_expected=grad_expected)
    if problem is not None:
        raise LossValueError(problem, term=name, step=step)
