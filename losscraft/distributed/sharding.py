"""Fully sharded data parallelism (FSDP2, torch's ``fully_shard``) for the policy: each of N
processes holds ``1/N`` of every parameter, gradient and optimizer state, and gathers a layer's
full weights only for its forward and backward.

Switched on by ``run.sharding = "fsdp"`` in the recipe, or by ``accelerate launch --use_fsdp``
(losscraft applies torch's ``fully_shard`` itself — one unit per decoder layer, i.e. per class
in the model's ``_no_split_modules``, plus the root — so accelerate's FSDP plugin options such
as its wrap policy or ``--fsdp_version`` are not read: it is always FSDP2). Everything else is
the data-parallel design of `losscraft.distributed`: each rank takes its shard of every global
micro-batch and losses are normalised over the global batch, so the gradient is the *sum* over
ranks (`shard_model` sets the reduce-scatter's divide factor to 1). Frozen experts are not
sharded (each rank holds them whole), nor are ``[lora]`` adapters or experts as adapters
supported (`check_stage`).

Resuming: checkpoints hold full weights and optimizer state (keyed by parameter name,
`optimizer_state_keyed`), so a run resumes with another number of processes, or with sharding
switched on or off (``run.sharding`` may change on ``--resume``).

What changes under sharding:

- **The gradient-norm penalty** cannot take gradients with ``torch.autograd.grad`` /
  ``torch.func``: a sharded parameter's gradient only reaches ``.grad``, through FSDP's
  post-backward reduce-scatter. `finite_difference_penalty` computes the finite-difference
  penalty (forward or central difference, absolute or relative shift) with ``.backward()``
  passes into ``.grad`` instead, and records each rank's shards of its gradient for the
  penalty's share (see there); the exact (double-backward) penalty is refused
  (`check_penalty_method`). The penalty reaches both through the step engine
  `losscraft.distributed.engines.FullySharded`.
- **Saving** gathers a full (unsharded) state dict on rank 0 (`full_model_state`,
  `full_optimizer_state`, collectives every rank must join); resuming loads the full state
  into the shards (`load_full_state`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from losscraft import distributed
from losscraft.errors import LosscraftError, RecipeError

#: Values of ``run.sharding``.
MODES = ("none", "fsdp")
#: Environment flag ``accelerate launch --use_fsdp`` sets.
ACCELERATE_FSDP = "ACCELERATE_USE_FSDP"


def requested(mode: str = "none") -> bool:
    """Whether the run shards the policy: ``run.sharding == "fsdp"`` or launched by
    ``accelerate launch --use_fsdp``."""
    return mode == "fsdp" or os.environ.get(ACCELERATE_FSDP, "").lower() in ("1", "true", "yes")


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` was sharded by ``fully_shard`` (its parameters are DTensor shards)."""
    from torch.distributed.fsdp import FSDPModule
    return isinstance(model, FSDPModule)


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself otherwise); shares its storage."""
    from torch.distributed.tensor import DTensor
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def shard_model(model: nn.Module) -> nn.Module:
    """Apply ``fully_shard`` to every decoder layer (the classes of ``model._no_split_modules``)
    and to ``model`` itself, in place, with gradients *summed* over ranks (losses are already
    normalised by the global batch). Needs a process group of more than one rank; call it
    before building the optimizer (the parameters become DTensor shards). Returns ``model``."""
    if not distributed.active():
        raise LosscraftError("FSDP (run.sharding = \"fsdp\") needs several processes: launch "
                             "with torchrun --nproc-per-node N or accelerate launch")
    if is_sharded(model):
        return model
    from torch.distributed.fsdp import fully_shard
    units = set(getattr(model, "_no_split_modules", None) or ())
    for module in list(model.modules()):
        if module is not model and type(module).__name__ in units:
            fully_shard(module)
    fully_shard(model)
    from torch.distributed.fsdp import FSDPModule
    for module in model.modules():  # per unit: the root's setting does not recurse
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            # plain SUM collectives: gloo has no PREMUL_SUM (the divide factor is 1 anyway)
            module.set_force_sum_reduction_for_comms(True)
    return model


def check_penalty_method(method: str, *, key: str = "penalty.method",
                         file: str | None = None) -> None:
    """`RecipeError` for the exact penalty under FSDP: its double backward needs
    ``torch.autograd.grad`` with respect to the parameters, which a sharded model does not
    serve (gradients reach only ``.grad``, by reduce-scatter)."""
    if method != "finite_difference":
        raise RecipeError(
            f"the {method!r} gradient-norm penalty does not work with FSDP (run.sharding = "
            "\"fsdp\" / accelerate --use_fsdp): it needs torch.autograd.grad / torch.func with "
            "respect to the parameters, but sharded gradients only reach .grad through FSDP's "
            "reduce-scatter. Use penalty.method = \"finite_difference\" (no double backward), "
            "or train data-parallel without sharding", file=file, key=key)


def check_stage(recipe, stage, adapter_experts=()) -> None:
    """`RecipeError` for what a sharded stage does not support, naming the recipe key: the
    exact gradient penalty (`check_penalty_method`), a ``[lora]`` adapter and experts as
    adapters on the policy (peft modules inside FSDP units are not supported here; FSDP is for
    training all weights — an adapter run fits one device without it)."""
    for term in stage.terms:
        if term.penalty is not None and term.penalty.weight:
            check_penalty_method(term.penalty.method, key=f"{term.key}.penalty.method",
                                 file=recipe.path)
    if recipe.lora is not None and recipe.lora.enabled:
        raise RecipeError("run.sharding = \"fsdp\" (or --use_fsdp) trains all weights sharded; "
                          "a [lora] adapter is small enough to train data-parallel: remove "
                          "[lora] or set run.sharding = \"none\" without --use_fsdp",
                          file=recipe.path, key="lora")
    if adapter_experts:
        raise RecipeError(f"experts as adapters ({', '.join(adapter_experts)}) attach peft "
                          "adapters to the policy, which FSDP does not shard here: load them as "
                          "full expert models (adapter = false) or set run.sharding = \"none\"",
                          file=recipe.path, key=f"experts.{adapter_experts[0]}.adapter")


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole value of a DTensor (e.g. the gradient norm ``clip_grad_norm_`` returns for
    sharded gradients); the tensor itself otherwise."""
    from torch.distributed.tensor import DTensor
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


# ----------------------------------------------------------------------------- the penalty
def sharded_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters of a sharded ``model`` as this rank's DTensor shards, by name.
    FSDP registers the *unsharded* tensors as the module's parameters while a unit is gathered
    (e.g. the root after a forward), so every unit is resharded first; a pending backward
    gathers them again (as after any forward with ``reshard_after_forward``)."""
    from torch.distributed.fsdp import FSDPModule
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def finite_difference_penalty(penalty, ctx, key: str):
    """The finite-difference gradient-norm penalty (``penalty``, a
    `losscraft.core.penalty.GradientNormPenalty`: its term, ``difference``, ``eps`` / ``radius``)
    on a sharded model, as the penalty returns it unsharded (``LossOutput`` whose gradient is
    this micro-batch's part of ``2·H·g``; metrics ``grad_norm``, ``penalty``, ``term``, ``shift``,
    ``fd_passes``).

    The first call of a step (memoised in ``ctx.step_state[key]``) runs passes over the step's
    micro-batches with ``.backward()`` into ``.grad`` (any gradient already there is set aside
    and put back):

    1. ``g = Σ_m ∇L_m`` at θ: FSDP's reduce-scatter sums it over ranks, so each rank holds its
       shard of the global ``g``; ``‖g‖`` and ``‖θ‖`` are all-reduced sums of the shards'
       squared norms;
    2. ``∇L_S(θ + h·g)`` — and for the central difference ``∇L_S(θ − h·g)`` — with
       ``h = ρ/‖g‖`` (``ρ = eps·‖θ‖``, or the absolute ``radius``): every rank shifts its shard
       in place, backpropagates the term on every micro-batch, and restores its shard bit for
       bit.

    Then ``2·H·g ≈ 2·(∇L_S(θ + h·g) − g)/h`` (forward) or ``(∇L_S(θ + h·g) − ∇L_S(θ − h·g))/h``
    (central) — the formulas of `losscraft.core.finite_difference`, summed over the step; a
    shift below the compute dtype's resolution is warned about as there. Where the step
    measures the penalty's share (`GradientNormPenalty.measures_share`) each rank records its
    shards of it (`losscraft.core.penalty_share`, which sums the squares over ranks). The whole
    step's penalty gradient is attached to the first micro-batch (gradient accumulation is
    linear), as a surrogate on each rank's own shards: its backward adds ``2·H·g`` to ``.grad``
    beside the other terms' reduce-scattered gradients (`losscraft.core.gradient_surrogate`).
    ``term`` values (per micro-batch, this rank's share) come from pass 1; the ``penalty``
    metric (``‖g‖²``) is reported once, by rank 0's first micro-batch.
    """
    from losscraft.core import penalty_share
    from losscraft.core.gradient_surrogate import gradient_surrogate
    from losscraft.core.loss import LossOutput

    params = sharded_params(ctx.model)
    index = next((i for i, b in enumerate(ctx.step_batches) if b is ctx.batch), None)
    if index is None:
        raise ValueError("the context's batch is not one of its step_batches")
    if key not in ctx.step_state:
        ctx.step_state[key] = _penalty_passes(penalty, ctx, params)
        if penalty.measures_share(ctx):
            penalty_share.record(ctx.step_state, penalty, ctx.step_state[key][0])
    hg, norm, values, extra = ctx.step_state[key]
    first = index == 0
    share = norm.square() if first and distributed.is_main() else torch.zeros_like(norm)
    if first:
        names = list(params)
        value = share + gradient_surrogate([local(params[n]) for n in names],
                                           [hg[n] for n in names]).to(share.dtype)
    else:
        value = share
    return LossOutput(value, {"grad_norm": norm, "penalty": share, "term": values[index],
                              **extra}, frozenset({"penalty", "term"}))


def _penalty_passes(penalty, ctx, params: dict[str, torch.Tensor]):
    """``(this rank's shards of 2·H·g by name, ‖g‖, per-micro-batch term values, metrics)``;
    see `finite_difference_penalty`."""
    from losscraft.core import finite_difference as fd

    names = list(params)
    kept = {n: params[n].grad for n in names}
    for n in names:
        params[n].grad = None
    try:
        values = [_backward_term(penalty.term, ctx.for_batch(b)) for b in ctx.step_batches]
        g = _local_grads(params)
        norm = torch.tensor(_global_sq_norm(g.values()), dtype=torch.float64).sqrt()
        if norm.item() == 0.0:
            return {n: torch.zeros_like(t) for n, t in g.items()}, norm, values, {
                "fd_passes": 0.0}
        theta = math.sqrt(_global_sq_norm(local(p).detach() for p in params.values()))
        h, relative = fd.shift_from_norms(theta, norm.item(), radius=penalty.radius,
                                          eps=penalty.eps)
        penalty.warn_resolution(relative, fd.compute_dtype(params, ctx.autocast_dtype))
        plus = _shifted_gradient(penalty.term, ctx, params, g, h)
        if penalty.difference == "forward":
            base, factor = g, 2.0 / h
        else:
            base, factor = _shifted_gradient(penalty.term, ctx, params, g, -h), 1.0 / h
        hg = {n: (plus[n] - base[n]).mul_(factor) for n in names}
        return hg, norm, values, {"shift": relative,
                                  "fd_passes": float(fd.PASSES[penalty.difference])}
    finally:
        for n in names:
            params[n].grad = kept[n]


def _global_sq_norm(tensors) -> float:
    """``Σ ‖t‖²`` over this rank's tensors (shards), summed over every rank."""
    return distributed.all_reduce_sum(sum(float(t.double().square().sum()) for t in tensors))


def _shifted_gradient(term, ctx, params: dict[str, torch.Tensor], g: dict[str, torch.Tensor],
                      h: float) -> dict[str, torch.Tensor]:
    """This rank's shards of ``Σ_m ∇L_m(θ + h·g)`` (``h`` may be negative): each rank shifts its
    shards in place, backpropagates the term on every micro-batch, and restores them bit for
    bit."""
    saved = {n: local(p).detach().clone() for n, p in params.items()}
    try:
        with torch.no_grad():
            for n, p in params.items():
                local(p).add_((h * g[n]).to(p.dtype))
        for b in ctx.step_batches:
            _backward_term(term, ctx.for_batch(b))
        return _local_grads(params)
    finally:
        with torch.no_grad():
            for n, p in params.items():
                local(p).copy_(saved[n])


def _backward_term(term, ctx) -> torch.Tensor:
    value = term(ctx).value
    if value.requires_grad:
        value.backward()
    return value.detach()


def _local_grads(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """This rank's shard of every ``.grad`` (zeros where none), in float32 or wider; clears
    ``.grad``."""
    out = {}
    for n, p in params.items():
        shard = local(p)
        grad = local(p.grad) if p.grad is not None else torch.zeros_like(shard)
        out[n] = grad.detach().to(torch.promote_types(grad.dtype, torch.float32)).clone()
        p.grad = None
    return out


# ----------------------------------------------------------------------------- saving
def _options(**kwargs: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions
    return StateDictOptions(full_state_dict=True, **kwargs)


def full_model_state(model: nn.Module, *, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of a sharded ``model`` on CPU, on rank 0 (empty on the
    others). A collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    state = get_model_state_dict(model, options=_options(cpu_offload=True))
    if trainable_only:
        keep = {n for n, p in model.named_parameters() if p.requires_grad}
        state = {n: t for n, t in state.items() if n in keep}
    return state


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimizer state (keyed by parameter name) on rank 0 (empty on the others). A
    collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    return get_optimizer_state_dict(model, optimizer, options=_options(cpu_offload=True))


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    weights: dict[str, torch.Tensor],
                    optimizer_state: dict[str, Any] | None) -> None:
    """Load full (unsharded) ``weights`` (all or only the trainable ones) and optimizer state
    into a sharded model and its optimizer; each rank keeps its shards. Every rank passes the
    full dicts (read from the same checkpoint)."""
    from torch.distributed.checkpoint.state_dict import (set_model_state_dict,
                                                         set_optimizer_state_dict)
    set_model_state_dict(model, weights, options=_options(strict=False))
    if optimizer is not None and optimizer_state is not None:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        set_optimizer_state_dict(model, optimizer, optimizer_state_keyed(
            optimizer_state, names, by_name=True), options=_options())


def optimizer_state_keyed(state: dict[str, Any], names: list[str], *,
                          by_name: bool) -> dict[str, Any]:
    """An optimizer state dict with its parameters keyed by name (``by_name``: the full
    state dicts of ``torch.distributed.checkpoint``, which a sharded run saves) or by number
    (``optimizer.state_dict()``, which a plain or DDP run saves), converted if needed.
    ``names``: the optimizer's parameters in order (the model's trainable ones), so a
    checkpoint resumes with or without sharding."""
    groups = state["param_groups"]
    saved = [p for g in groups for p in g["params"]]
    if all(isinstance(p, str) for p in saved) == by_name:
        return state
    if len(saved) != len(names):
        raise ValueError(f"the optimizer state has {len(saved)} parameters, the model "
                         f"{len(names)} trainable ones")
    if by_name:
        key = {i: n for i, n in enumerate(names)}
        key.update({str(i): n for i, n in enumerate(names)})
    else:
        key = {n: i for i, n in enumerate(names)}
    return {"state": {key[k]: v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [key[p] for p in g["params"]]} for g in groups]}
