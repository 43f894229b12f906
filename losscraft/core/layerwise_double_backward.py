"""Double backward that holds one decoder layer's first-backward graph at a time.

The exact gradient-norm penalty differentiates a gradient: ``g = ∇L`` is taken with
``create_graph=True`` and then differentiated again (``H·v``). Plain autograd keeps the whole
first backward's graph until the second pass is done — for every op of every layer its incoming
gradient and whatever its backward formula saves: on SmolLM2-135M ≈ 660 MiB per 240-token row
through the transformer, more than the forward's own activations (benchmarks/RESULTS.md).

`enable(model)` wraps each decoder layer's forward in `_Layer`, an autograd function that runs
the layer on a private graph (kept, as the forward's activations always are) and whose
backward hands its work to `_LayerGradient`:

- **first backward** (`_LayerGradient.forward`): the layer's vector-Jacobian product on the
  private graph, *without* recording a graph of it — only the layer's incoming gradient is
  saved (one ``(B, T, H)`` tensor per layer);
- **second backward** (`_LayerGradient.backward`): the layer's first backward is rebuilt with
  ``create_graph=True`` on the same private graph, differentiated at once, and dropped before
  the next layer's.

So the double backward holds one layer's first-backward graph instead of all of them, at the
price of running each layer's first backward twice (once plainly, once recorded). No forward is
recomputed: the private graph is the forward's, so dropout masks and autocast are those of the
forward. Everything outside the decoder layers (embeddings, final norm, output layer, loss head)
keeps plain autograd.

Results equal plain autograd's up to floating-point summation order. The wrapper steps aside
(the layer's own forward runs) under ``torch.no_grad`` (generation, experts), when nothing the
layer computes needs a gradient, and inside ``torch.func`` transforms, which cannot follow a
custom autograd function that calls `torch.autograd.grad` (the penalty's ``torch.func`` route
then works as before).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from losscraft.errors import ModelError

#: The attribute a wrapped layer carries: its own (unwrapped) forward.
_ORIGINAL = "_losscraft_layerwise_original_forward"


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a transformer: Hugging Face's ``GradientCheckpointingLayer``
    subclasses (every decoder layer in transformers ≥ 4.52), else the modules whose class is
    named in the model's ``_no_split_modules``. Empty when neither exists."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # older transformers
        GradientCheckpointingLayer = None  # noqa: N806
    if GradientCheckpointingLayer is not None:
        found = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        if found:
            return found
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def enable(model: nn.Module) -> int:
    """Wrap every decoder layer of ``model`` (see the module docstring); returns how many are
    wrapped. Idempotent."""
    layers = decoder_layers(model)
    for layer in layers:
        if not hasattr(layer, _ORIGINAL):
            original = layer.forward
            setattr(layer, _ORIGINAL, original)
            layer.forward = functools.partial(_forward, layer, original)
    return len(layers)


def disable(model: nn.Module) -> None:
    """Undo `enable`."""
    for layer in model.modules():
        original = layer.__dict__.pop(_ORIGINAL, None)
        if original is not None:
            del layer.forward


def is_enabled(model: nn.Module) -> bool:
    """Whether `enable` has wrapped ``model``'s decoder layers."""
    return any(hasattr(m, _ORIGINAL) for m in model.modules())


def _in_functorch_transform() -> bool:
    return torch._C._functorch.peek_interpreter_stack() is not None


def _forward(layer: nn.Module, original: Callable, *args, **kwargs):
    hidden = args[0] if args else kwargs.get("hidden_states")
    if (not isinstance(hidden, torch.Tensor) or not torch.is_grad_enabled()
            or _in_functorch_transform()):
        return original(*args, **kwargs)
    params = [p for p in layer.parameters() if p.requires_grad]
    others = [v for v in (*args[1:], *kwargs.values()) if _needs_grad(v)]
    if others:  # a gradient would have to reach another input: leave it to plain autograd
        return original(*args, **kwargs)
    if not hidden.requires_grad and not params:
        return original(*args, **kwargs)

    def run(x: torch.Tensor):
        if args:
            return original(x, *args[1:], **kwargs)
        return original(**{**kwargs, "hidden_states": x})
    run.layer = layer

    box: dict = {}
    out = _Layer.apply(run, box, hidden, *params)
    rest = box.get("rest")
    return out if rest is None else (out, *rest)


def _needs_grad(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.requires_grad
    if isinstance(value, (tuple, list)):
        return any(_needs_grad(v) for v in value)
    return False


class _PrivateGraph:
    """A layer's forward on leaf aliases of its input: ``y = layer(x)``, with the tensors the
    gradient is taken for (``x`` when it needs one, then the trainable parameters)."""

    __slots__ = ("x", "y", "params", "x_needs_grad")

    def __init__(self, x: torch.Tensor, y: torch.Tensor, params: Sequence[torch.Tensor],
                 x_needs_grad: bool):
        self.x, self.y, self.params, self.x_needs_grad = x, y, tuple(params), x_needs_grad

    @property
    def inputs(self) -> list[torch.Tensor]:
        return ([self.x] if self.x_needs_grad else []) + list(self.params)


class _Layer(torch.autograd.Function):
    """``y = layer(x)`` with a backward that goes through `_LayerGradient`."""

    @staticmethod
    def forward(ctx, run, box, x, *params):
        with torch.enable_grad():
            x_local = x.detach().requires_grad_(x.requires_grad)
            out = run(x_local)
        y = out
        if isinstance(out, tuple):  # (hidden, extras...) from layers that return a tuple
            y, rest = out[0], out[1:]
            if any(_needs_grad(r) for r in rest):
                raise ModelError(f"{type(run.layer).__name__} returns more than one "
                                 "differentiable output, which the layerwise double backward "
                                 "cannot carry; set the penalty's exact_mode = \"autograd\"")
            box["rest"] = rest
        ctx.graph = _PrivateGraph(x_local, y, params, x.requires_grad)
        ctx.save_for_backward(x, *params)
        return y.detach()

    @staticmethod
    def backward(ctx, gy):
        x, *params = ctx.saved_tensors
        grads = _LayerGradient.apply(ctx.graph, gy, x, *params)
        if not ctx.graph.x_needs_grad:
            return (None, None, None, *grads)
        return (None, None, *grads)


class _LayerGradient(torch.autograd.Function):
    """``(∂x, ∂params) = vjp(layer, gy)`` on the layer's private graph; its own backward
    rebuilds that vjp with ``create_graph=True`` and differentiates it (the double backward)."""

    @staticmethod
    def forward(ctx, graph: _PrivateGraph, gy, x, *params):
        inputs = graph.inputs
        with torch.enable_grad():
            grads = torch.autograd.grad(graph.y, inputs, gy, retain_graph=True,
                                        allow_unused=True)
        ctx.graph = graph
        ctx.save_for_backward(gy)
        ctx.set_materialize_grads(False)
        return tuple(torch.zeros_like(t) if g is None else g for g, t in zip(grads, inputs))

    @staticmethod
    def backward(ctx, *cotangents):
        (gy,) = ctx.saved_tensors
        graph = ctx.graph
        inputs = graph.inputs
        with torch.enable_grad():
            gy_local = gy.detach().requires_grad_()
            grads = torch.autograd.grad(graph.y, inputs, gy_local, retain_graph=True,
                                        create_graph=True, allow_unused=True)
            outs, cots = [], []
            for g, c in zip(grads, cotangents):
                if g is not None and c is not None and g.requires_grad:
                    outs.append(g)
                    cots.append(c)
            if outs:
                second = torch.autograd.grad(outs, [gy_local, *inputs], cots,
                                             retain_graph=True, allow_unused=True)
            else:
                second = [None] * (1 + len(inputs))
        d_gy, rest = second[0], list(second[1:])
        d_x = rest.pop(0) if graph.x_needs_grad else None
        return (None, d_gy, d_x, *rest)
