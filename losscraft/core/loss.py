"""The `Loss` protocol: a callable from a `StepContext` to a scalar plus named metrics."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from losscraft.core.context import StepContext
    from losscraft.core.engine import StepEngine


@dataclass
class LossOutput:
    """What a loss term returns.

    Attributes:
        value: a scalar tensor connected to the policy's parameters (or a constant).
        metrics: extra named numbers to log (plain floats or 0-d tensors; detached on logging).
        summed: names of ``metrics`` that are partial sums over the optimizer step (values
            normalised by step totals, token counts): the step logs their sum over micro-batches.
            Every other metric is averaged over micro-batches. The term's ``value`` itself is
            always summed.
    """

    value: torch.Tensor
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    summed: frozenset[str] = frozenset()


@runtime_checkable
class Loss(Protocol):
    """A loss term.

    Call it with the step context; it returns a `LossOutput`. A term reads the shared, cached
    policy outputs from ``ctx`` (``ctx.logits``, ``ctx.hidden_states``, ``ctx.expert_logits(name)``)
    so that no term runs its own forward pass. Optional class attributes tell the trainer what a
    term needs before the first batch is built:

    - ``requires: frozenset[str]`` — any of ``"negatives"`` (pack each example's negative
      responses into its row), ``"hidden_states"`` (keep the last hidden layer of the forward);
    - ``experts: tuple[str, ...]`` — names of frozen experts (declared in the recipe) it reads.

    To keep gradient accumulation exact, normalise by a count over the whole optimizer step
    (``ctx.step_sum``), not by a count of the current micro-batch, and list such partial sums in
    ``LossOutput.summed`` so that the logged step value does not depend on ``grad_accum``.

    A term may also define ``finish_metrics(metrics) -> dict``: it receives the step's combined
    metrics of the term (its own names, plus ``"value"`` for the term's value) and returns
    metrics to add or replace — for values that are not sums or means of per-micro-batch
    numbers (e.g. a perplexity, ``exp`` of the step's mean NLL).

    And ``prepare(model) -> None``: called once with the policy before its first step (after
    adapters and activation checkpointing are set up), for a term that must change how the
    model runs before any forward — e.g. the exact gradient penalty switches attention to an
    implementation with double backward and wraps the decoder layers
    (`losscraft.core.layerwise_double_backward`). A ``prepare`` with an ``engine`` parameter
    also receives the run's `losscraft.core.engine.StepEngine` (e.g. whether several processes
    share each step). Call it through `prepare_loss`.
    """

    def __call__(self, ctx: "StepContext") -> LossOutput: ...


def loss_requires(loss: object) -> frozenset[str]:
    """The ``requires`` set of a loss (empty when it declares none)."""
    return frozenset(getattr(loss, "requires", ()) or ())


def loss_experts(loss: object) -> tuple[str, ...]:
    """The expert names a loss reads (empty when it declares none)."""
    return tuple(getattr(loss, "experts", ()) or ())


def prepare_loss(loss: object, model, engine: "StepEngine | None" = None) -> None:
    """Let ``loss`` prepare ``model`` before its first step (its optional ``prepare``). With an
    ``engine``, a ``prepare`` that takes an ``engine`` parameter receives it as ``engine=``;
    others are called with ``model`` alone."""
    prepare = getattr(loss, "prepare", None)
    if not callable(prepare):
        return
    if engine is not None and _takes_engine(prepare):
        prepare(model, engine=engine)
    else:
        prepare(model)


def _takes_engine(fn) -> bool:
    try:
        parameter = inspect.signature(fn).parameters.get("engine")
    except (TypeError, ValueError):  # a callable without a signature: the plain call
        return False
    return parameter is not None and parameter.kind is not parameter.POSITIONAL_ONLY
