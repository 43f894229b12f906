"""Read a causal LM's last hidden states and output layer without computing its full logits.

A forward pre-hook on the model's output layer (``get_output_embeddings()``, the ``lm_head``)
records the tensor it is called on and the weight in use (under ``torch.func.functional_call``
that is the substituted tensor, so `StepContext.with_params` copies see their own parameters).
With ``skip_logits=True`` the hook hands the layer zero positions instead, so the model returns
``(B, 0, V)`` logits and the ``(B, T, V)`` tensor is never formed; fused loss heads
(`losscraft.functional.fused_js`, `fused_ce`) then work from the recorded `LinearHead`.

Only models whose logits are exactly ``lm_head(hidden)`` qualify: a model that rescales or
soft-caps its logits after the layer (Gemma 2's ``final_logit_softcapping``, Cohere's
``logit_scale``, Granite's ``logits_scaling``) or whose output layer is not a plain
``nn.Linear`` (a LoRA-wrapped ``lm_head``) is refused with a `ModelError`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from torch import nn

from losscraft.errors import ModelError
from losscraft.functional.linear_head import LinearHead

#: Config settings that change the logits after the output layer, with their neutral values.
_POST_HEAD_SETTINGS = {"final_logit_softcapping": (None, 0, 0.0), "logit_scale": (None, 1, 1.0),
                       "logits_scaling": (None, 1, 1.0), "output_multiplier_scale": (None, 1, 1.0)}


def output_layer(model: nn.Module) -> nn.Linear:
    """The model's output layer, checked to be a plain ``nn.Linear`` whose output is the logits.

    Raises:
        ModelError: the model has no output layer, it is not an ``nn.Linear``, or the model
            transforms the logits after it (see the module docstring).
    """
    getter = getattr(model, "get_output_embeddings", None)
    layer = getter() if callable(getter) else None
    if layer is None:
        raise ModelError(f"{type(model).__name__} has no output layer (get_output_embeddings()); "
                         "fused loss heads need one — set fused = false")
    if type(layer) is not nn.Linear:
        raise ModelError(f"the output layer of {type(model).__name__} is a "
                         f"{type(layer).__name__}, not a plain nn.Linear (e.g. LoRA on lm_head): "
                         "fused loss heads cannot read its weight — set fused = false")
    config = getattr(model, "config", None)
    for key, neutral in _POST_HEAD_SETTINGS.items():
        value = getattr(config, key, None) if config is not None else None
        if value not in neutral:
            raise ModelError(f"{type(model).__name__} applies {key}={value} to its logits after "
                             "the output layer: fused loss heads would compute other logits — "
                             "set fused = false")
    return layer


def has_output_layer(model: nn.Module) -> bool:
    """Whether `output_layer` accepts ``model`` (no exception)."""
    try:
        output_layer(model)
    except ModelError:
        return False
    return True


@dataclass
class HeadCapture:
    """Filled by `capture_head`: the output layer's input and parameters of the last call."""

    head: LinearHead | None = None


@contextmanager
def capture_head(model: nn.Module, *, skip_logits: bool = False):
    """Record the output layer's input (and weight) during a forward of ``model``.

    Args:
        model: a causal LM accepted by `output_layer`.
        skip_logits: hand the layer zero positions, so the model's logits come out ``(B, 0, V)``.

    Yields:
        a `HeadCapture` whose ``head`` is set once the model has run.
    """
    layer = output_layer(model)
    box = HeadCapture()

    def hook(module, args):
        (hidden,) = args[:1]
        box.head = LinearHead(hidden, module.weight, module.bias)
        if skip_logits:
            return (hidden[..., :0, :], *args[1:])
        return None

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield box
    finally:
        handle.remove()
