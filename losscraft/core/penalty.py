"""`GradientNormPenalty`: ``‖∇_θ L‖²`` of a loss term over the whole optimizer step, the
flatness regulariser of FlatGD.

With gradient accumulation over micro-batches ``m`` (``L = Σ_m L_m``, each ``L_m`` normalised by
the step's totals), the penalty is ``‖g‖²`` with ``g = Σ_m ∇_θ L_m`` — the gradient of the whole
step, as one batch of the same rows would give — not ``Σ_m ‖∇_θ L_m‖²``. Its gradient is
``2·H·g = Σ_m 2·H_m·g`` (``H_m`` the Hessian of ``L_m``): linear in the micro-batches once ``g``
is known. So the first call in a step makes a first pass over all micro-batches of the step
(``ctx.step_batches``) to accumulate ``g`` (memoised in ``ctx.step_state``, which the trainer
shares between a step's contexts); each micro-batch then adds its ``2·H_m·g``:

- ``method="exact"``: reverse-over-reverse — ``∇L_m`` with ``create_graph=True`` on the step's
  shared forward, then the gradient of ``∇L_m · g`` (``gᵀH_m = H_m g`` as ``H_m`` is symmetric;
  `losscraft.core.double_backward.hessian_vector_carrier`), taken by the trainer's backward
  itself. In the default ``exact_mode =
  "layerwise"`` the decoder layers are wrapped (`losscraft.core.layerwise_double_backward`) so
  that the double backward holds one layer's first-backward graph at a time instead of all of
  them (about half the memory per row, benchmarks/RESULTS.md); ``"autograd"`` keeps the whole
  graph; ``"torch.func"`` takes ``grad`` of the term re-evaluated through ``functional_call``
  (`StepContext.with_params`) and ``vjp`` of that gradient function at ``g``. Needs every op to
  support double backward (eager attention, no gradient checkpointing — checked and fixed by
  `prepare`, which the trainer calls before the first step, or on first use).
- ``method="finite_difference"`` (Zhao et al. 2022, SAM-style), along the step's gradient
  ``g``: ``2·H_m·g`` from ``∇L_m`` at ``θ ± h·g`` (`losscraft.core.finite_difference`: the
  ``central`` difference, error O(ρ²), two forward/backward passes of the term; or the
  ``forward`` one, error O(ρ), one), the shift's norm ``ρ`` absolute (``radius``) or relative
  to the parameters' (``eps``: ``ρ = eps·‖θ‖``). Summed over micro-batches this is exactly the
  finite difference of the whole step. The result is handed to the trainer's backward as a
  computed gradient (`losscraft.core.gradient_surrogate`), so no double backward: fused kernels
  are fine. Errors measured in tests/test_penalty_finite_difference.py.

A step of one micro-batch needs no first pass (``g`` is the micro-batch's own gradient). With M
micro-batches the first pass costs one forward/backward of the term per micro-batch (and the
experts' forwards again for all but the calling one).

Several processes: the context's engine (``ctx.engine``, `losscraft.core.engine`) says how the
step is shared. Data parallel: ``g`` is all-reduced over ranks (``engine.all_reduce_tensors``)
after the first pass, so both methods use the global batch's gradient for the norm, the vjp
tangent and the finite-difference direction; each rank adds ``2·H_m·g`` for its own
micro-batches and the summed gradient reduction gives the single-process gradient. For a model
the engine reports as sharded (FSDP), the penalty is the engine's own
(``engine.sharded_gradient_penalty``: the finite-difference method, both differences and both
shifts, as ``.backward()`` passes into ``.grad``; the exact one is refused), since sharded
gradients never reach ``torch.autograd.grad``.

The returned value is a surrogate whose gradient w.r.t. the trainable parameters *is*
``2·H_m·g``, so the trainer's plain ``backward()`` on the total objective applies the penalty.
Exact, reverse over reverse: ``2·(∇L_m · g)`` on the first backward's graph minus its detached
value (`hessian_vector_carrier`) — the second backward *is* the trainer's, so one pass back
through the forward graph serves the objective and the penalty; ``torch.func``: the computed
``2·H_m·g`` through `losscraft.core.gradient_surrogate`, as is the finite difference's. On a
step that measures the penalty's share (`losscraft.core.penalty_share`:
``‖∇(λ‖g‖²)‖ / ‖∇(rest)‖``; every ``share_every`` steps) ``2·H_m·g`` is recorded; reverse over
reverse then forms it on its own (`penalty_share.split_carrier`: the carrier's gradient, then a
surrogate) at the cost of one more pass back through the forward graph. Its value is
micro-batch ``m``'s share ``g·∇L_m`` of ``‖g‖²``: summed over the step (as the trainer sums
term values) it is ``‖g‖²``. The weight λ belongs to the surrounding `Term`.
The term is evaluated through `StepContext.evaluate`, so when it is also a term of the objective
(FlatGD's safety loss, as recipes build it) its loss head runs once.

Randomness: every policy forward of a micro-batch replays the same RNG state (see
`losscraft.core.rng`), so dropout masks are identical in the first pass, the shared forward and
the re-evaluations — a model in train mode with dropout is fine. Terms that draw from
``ctx.generator`` (CRINGE's sampling) see fresh samples in every pass.
"""

from __future__ import annotations

import torch

from losscraft.core import finite_difference as fd
from losscraft.core import layerwise_double_backward, penalty_share
from losscraft.core.context import StepContext
from losscraft.core.double_backward import ensure_double_backward, hessian_vector_carrier
from losscraft.core.engine import SINGLE_PROCESS, StepEngine
from losscraft.core.gradient_surrogate import gradient_surrogate
from losscraft.core.loss import Loss, LossOutput, loss_experts, loss_requires
from losscraft.errors import RecipeError

METHODS = ("exact", "finite_difference")
EXACT_MODES = ("layerwise", "autograd", "torch.func")

#: Metrics that are partial sums over the step's micro-batches (``grad_norm`` is the step's).
SUMMED = frozenset({"penalty", "term"})


class GradientNormPenalty:
    """``‖∇_θ Σ_m term_m‖²`` over the optimizer step, as a loss whose gradient is ``2·H_m·g``.

    Args:
        term: the loss whose gradient norm is penalised (e.g. the safety loss).
        method: ``"exact"`` (torch.func Hessian-vector product) or ``"finite_difference"``.
        radius: the finite-difference shift's norm (a parameter-space distance) when ``eps``
            is ``None``; ignored by exact.
        difference: ``"forward"`` (error O(ρ), one extra forward/backward of the term) or
            ``"central"`` (error O(ρ²), two); `losscraft.core.finite_difference`. Recipes
            default to ``"central"``.
        eps: the shift's norm relative to the trainable parameters' (``ρ = eps·‖θ‖``, the step
            along ``g`` is ``h = eps·‖θ‖/‖g‖``); ``None``: the absolute ``radius``. Recipes
            default to ``1e-4`` (measured in tests/test_penalty_finite_difference.py). A
            relative shift below the compute dtype's resolution (bf16) is
            warned about (`RuntimeWarning` naming ``key``).
        key: where the penalty's settings live, for messages (a recipe's
            ``stages.main.terms.safety.penalty``).
        switch_attention: for ``"exact"``, switch a model with fused attention or gradient
            checkpointing to eager / no checkpointing (logged) instead of raising `ModelError`.
        exact_mode: how ``"exact"`` computes ``H·g`` (measured against each other in
            benchmarks/RESULTS.md): ``"layerwise"`` (default) — reverse over reverse on the
            step's shared forward, one decoder layer's first-backward graph held at a time
            (`prepare` wraps the layers); ``"autograd"`` — the same on plain autograd, the whole
            first-backward graph held (faster where memory is plentiful); ``"torch.func"`` —
            the term re-evaluated through ``functional_call`` under ``torch.func.grad`` /
            ``vjp`` (a second forward). A re-parameterised context (`StepContext.with_params`)
            or a data-parallel one (a ``forward_model`` wrapper) always takes the
            ``torch.func`` route.
        share_every: record ``2·H·g`` for the step's share metrics
            (`losscraft.core.penalty_share`) on every ``share_every``-th optimizer step
            (``ctx.step % share_every == 0``, and the first one it computes; ``1``: every
            step, ``0``: never). Nearly free for the finite difference and ``torch.func``;
            reverse over reverse pays one more backward through the forward graph on those
            steps (measured in recipes/flatgd.toml).

    Metrics: ``grad_norm`` (``‖g‖`` of the step), ``penalty`` (this micro-batch's share of
    ``‖g‖²``; summed over the step: ``‖g‖²``), ``term`` (the term's value; summed: the step's);
    finite difference: ``shift`` (the shift's norm relative to ``‖θ‖``) and ``fd_passes``
    (forward/backward passes of the term at shifted parameters per micro-batch: the step's cost
    over a Safety_loss step is this plus the first pass's over the step). The
    step's share metrics come from `losscraft.core.penalty_share`.
    """

    def __init__(self, term: Loss, *, method: str = "exact", radius: float = 1e-2,
                 switch_attention: bool = True, exact_mode: str = "layerwise",
                 difference: str = "forward", eps: float | None = None, key: str = "penalty",
                 share_every: int = 1):
        if method not in METHODS:
            raise RecipeError(f"method must be one of {METHODS}, got {method!r}", key="method")
        if exact_mode not in EXACT_MODES:
            raise RecipeError(f"exact_mode must be one of {EXACT_MODES}, got {exact_mode!r}",
                              key="exact_mode")
        if not radius > 0:
            raise RecipeError(f"radius must be > 0, got {radius!r}", key="radius")
        if difference not in fd.DIFFERENCES:
            raise RecipeError(f"difference must be one of {fd.DIFFERENCES}, got {difference!r}",
                              key="difference")
        if eps is not None and not eps > 0:
            raise RecipeError(f"eps must be > 0, got {eps!r}", key="eps")
        if isinstance(share_every, bool) or not isinstance(share_every, int) or share_every < 0:
            raise RecipeError("share_every must be an integer >= 0 (1: every step, 0: never), "
                              f"got {share_every!r}", key="share_every")
        self.share_every = share_every
        self._first_step: int | None = None
        self.difference = difference
        self.eps = None if eps is None else float(eps)
        self.key = key
        self._warned = False
        self.term = term
        self.method = method
        self.radius = float(radius)
        self.switch_attention = switch_attention
        self.exact_mode = exact_mode
        self._checked: set[int] = set()

    @property
    def requires(self) -> frozenset[str]:
        return loss_requires(self.term)

    @property
    def experts(self) -> tuple[str, ...]:
        return loss_experts(self.term)

    def prepare(self, model, engine: StepEngine | None = None) -> None:
        """Before the first step (the trainer calls it through `prepare_loss`, with the step's
        ``engine``; default `SingleProcess`): for the exact method, make ``model``
        differentiable twice (`ensure_double_backward`: eager attention, no activation
        checkpointing) and, in ``"layerwise"`` mode, wrap its decoder layers
        (`layerwise_double_backward.enable`; not when the engine is data parallel, whose exact
        penalty takes the ``torch.func`` route). Nothing for a model the engine reports as
        sharded. Without it the first call does the same — that step's forward then ran
        unwrapped and its double backward holds the whole graph."""
        engine = engine if engine is not None else SINGLE_PROCESS
        if self.method != "exact" or engine.sharded(model):
            return
        if id(model) not in self._checked:
            ensure_double_backward(model, switch=self.switch_attention)
            self._checked.add(id(model))
        if self.exact_mode == "layerwise" and not engine.data_parallel:
            layerwise_double_backward.enable(model)

    def __call__(self, ctx: StepContext) -> LossOutput:
        params = ctx.trainable_params()
        if not params:  # nothing is trained: the penalty is a constant
            zero = torch.zeros(())
            return LossOutput(zero, {"grad_norm": zero, "penalty": zero, "term": zero}, SUMMED)
        if ctx.engine.sharded(ctx.model):  # FSDP: gradients only reach .grad (see there)
            return ctx.engine.sharded_gradient_penalty(self, ctx,
                                                       key=f"grad_norm_penalty:{id(self)}")
        step_grad = self._step_gradient(ctx, params)
        if self.method == "exact":
            own, carrier, term_value = self._exact(ctx, params, step_grad)
            sq_norm = _sq_norm(own if step_grad is None else step_grad)
            extra = {}
        else:
            own, carrier, term_value, sq_norm, extra = self._finite_difference(ctx, params,
                                                                               step_grad)
        g = own if step_grad is None else step_grad
        share = sq_norm if step_grad is None else _dot(g, own)
        # value == this micro-batch's share of ‖g‖²; the carrier is 0 with gradient 2·H_m·g.
        value = share + carrier.to(share.dtype)
        return LossOutput(value, {"grad_norm": sq_norm.sqrt(), "penalty": share,
                                  "term": term_value, **extra}, SUMMED)

    def measures_share(self, ctx: StepContext) -> bool:
        """Whether ``ctx``'s optimizer step records ``2·H·g`` for its share: every
        ``share_every``-th, and the first this penalty computes (a stage's first, as each stage
        builds its own), so that a stage shorter than ``share_every`` measures it too."""
        if self._first_step is None:
            self._first_step = ctx.step
        return self.share_every > 0 and (ctx.step == self._first_step
                                         or penalty_share.measured(ctx.step, self.share_every))

    def warn_resolution(self, relative: float, dtype: torch.dtype) -> None:
        """Warn once if a finite-difference shift of ``relative``·‖θ‖ is below ``dtype``'s
        resolution (`losscraft.core.finite_difference.warn_resolution`, naming the key)."""
        if not self._warned:
            setting = "eps" if self.eps is not None else "radius"
            self._warned = fd.warn_resolution(relative, dtype, f"{self.key}.{setting}")

    def _record(self, ctx: StepContext, hg: dict[str, torch.Tensor]) -> None:
        """Keep ``2·H_m·g`` for the step's share metric (`penalty_share`) when it measures it."""
        if self.measures_share(ctx):
            penalty_share.record(ctx.step_state, self, hg)

    # ------------------------------------------------------------------ the step's gradient
    def _step_gradient(self, ctx: StepContext, params: dict[str, torch.Tensor]):
        """``g = Σ_m ∇L_m`` over ``ctx.step_batches`` — and over every rank's micro-batches in a
        data-parallel run (all-reduced by ``ctx.engine``), so the norm and the direction are the
        global batch's —
        memoised in ``ctx.step_state``; ``None`` when the step is this one micro-batch of a
        single process (then ``g`` is its own gradient)."""
        batches = ctx.step_batches
        if len(batches) == 1 and batches[0] is ctx.batch and not ctx.engine.data_parallel:
            return None
        key = f"grad_norm_penalty:{id(self)}"
        if key not in ctx.step_state:
            if not any(b is ctx.batch for b in batches):
                raise ValueError("the context's batch is not one of its step_batches")
            names = list(params)
            total: dict[str, torch.Tensor] = {}
            for batch in batches:
                mine = batch is ctx.batch  # its graph is kept for the trainer's backward
                _, grads = self._term_grad(ctx if mine else ctx.for_batch(batch), names,
                                       keep_graph=mine)
                for n, gr in grads.items():
                    if n in total:
                        total[n].add_(gr)
                    else:  # a copy: the micro-batch's own gradient is memoised as it is
                        total[n] = gr.to(torch.promote_types(gr.dtype, torch.float32), copy=True)
            ctx.step_state[key] = ctx.engine.all_reduce_tensors(total)
        return ctx.step_state[key]

    def _term_grad(self, ctx: StepContext, names: list[str], *, keep_graph: bool = True):
        """The term's value and ``∇_θ`` of it on ``ctx``'s forward, by name; memoised per
        context. With ``keep_graph`` the value keeps its graph (the step's shared forward, which
        the trainer's backward still needs); otherwise it is detached."""
        def compute():
            params = ctx.trainable_params()
            # `evaluate`: the objective's own term on this forward, when it is the same loss
            value = (ctx.evaluate(self.term) if keep_graph else self.term(ctx)).value
            grads = _grad(value, [params[n] for n in names], names, retain_graph=keep_graph)
            return (value if keep_graph else value.detach()), grads
        if not keep_graph:
            return compute()
        return ctx.cached(f"grad_norm_penalty:{id(self)}", compute)

    # ------------------------------------------------------------------ exact
    def _exact(self, ctx: StepContext, params: dict[str, torch.Tensor], step_grad):
        """``(own, carrier, value)``: ``carrier`` is 0 with gradient ``2·H_m·g``."""
        if id(ctx.model) not in self._checked:  # not prepared by a trainer
            self.prepare(ctx.model, ctx.engine)
        names = list(params)
        tensors = [params[n] for n in names]
        if (ctx.params is None and self.exact_mode != "torch.func"
                and getattr(ctx, "forward_model", None) is None):
            # Reverse over reverse on the step's shared forward: no second forward, no second
            # set of activations, and the second backward is the trainer's own
            # (`hessian_vector_carrier`): one pass back through the forward graph serves the
            # objective and the penalty. Not through a DDP wrapper's forward, whose reducer
            # expects exactly one backward per forward.
            value = ctx.evaluate(self.term).value
            own, carrier = hessian_vector_carrier(
                value, tensors, None if step_grad is None else [step_grad[n] for n in names],
                scale=2.0)
            if carrier is None:  # H = 0: a zero gradient
                zeros = [torch.zeros_like(t) for t in tensors]
                self._record(ctx, dict(zip(names, zeros)))
                carrier = gradient_surrogate(tensors, zeros)
            elif self.measures_share(ctx):  # 2·H_m·g on its own, recorded for the share
                carrier = penalty_share.split_carrier(ctx.step_state, self, carrier, tensors,
                                                      names)
            return dict(zip(names, own)), carrier, value.detach()
        primals = {n: p.detach() for n, p in params.items()}

        def term_at(theta):
            value = self.term(ctx.with_params(theta)).value
            return value, value.detach()

        grad_fn = torch.func.grad(term_at, has_aux=True)
        own, vjp_fn, term_value = torch.func.vjp(grad_fn, primals, has_aux=True)
        tangent = own if step_grad is None else {n: step_grad[n].to(own[n].dtype) for n in own}
        (hg,) = vjp_fn(tangent)
        hg = {n: hg[n].detach() * 2.0 for n in names}
        self._record(ctx, hg)
        carrier = gradient_surrogate(tensors, [hg[n] for n in names])
        return _detach(own), carrier, term_value

    # ------------------------------------------------------------------ finite difference
    def _finite_difference(self, ctx: StepContext, params: dict[str, torch.Tensor], step_grad):
        """``(own, carrier, value, ‖g‖², metrics)``: ``carrier`` is 0 with gradient
        ``2·H_m·g`` (`losscraft.core.finite_difference.hessian_vector`, formed here and recorded
        for the share metric). The shifted forwards' graphs are freed as soon as their gradient
        is taken."""
        names = list(params)
        value, own = self._term_grad(ctx, names)
        g = own if step_grad is None else step_grad
        sq_norm = _sq_norm(g)
        tensors = [params[n] for n in names]
        if float(sq_norm) == 0.0 or not value.requires_grad:  # H·g = 0, as exact gives
            zeros = [torch.zeros_like(params[n]) for n in names]
            self._record(ctx, dict(zip(names, zeros)))
            return (own, gradient_surrogate(tensors, zeros), value.detach(), sq_norm,
                    {"fd_passes": 0.0})
        h, relative = fd.shift_scale(params, sq_norm, radius=self.radius, eps=self.eps)
        self.warn_resolution(relative, fd.compute_dtype(params, ctx.autocast_dtype))
        hg = fd.hessian_vector(self.term, ctx, params, names, own, g, h, self.difference)
        self._record(ctx, hg)
        carrier = gradient_surrogate(tensors, [hg[n] for n in names])
        return own, carrier, value.detach(), sq_norm, {
            "shift": relative, "fd_passes": float(fd.PASSES[self.difference])}


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
    """``Σ_n a[n]·b[n]`` in at least float32, without a parameter-sized temporary in fp32."""
    total = None
    for n in a:
        x, y = a[n], b[n]
        dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
        part = torch.dot(x.reshape(-1).to(dtype), y.reshape(-1).to(dtype))
        total = part if total is None else total + part
    return total


def _sq_norm(a: dict[str, torch.Tensor]) -> torch.Tensor:
    """``Σ_n ‖a[n]‖²`` in at least float32 (one read of each tensor)."""
    tensors = list(a.values())
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    norms = torch._foreach_norm([t if t.dtype == dtype else t.to(dtype) for t in tensors])
    return torch.stack(norms).square().sum()


def _detach(tree: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {n: t.detach() for n, t in tree.items()}
