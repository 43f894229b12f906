"""`StepContext`: what every loss term sees for one micro-batch.

The policy forward runs at most once per context (lazily, on first access of ``logits`` or
``hidden_states``) and its outputs are shared by all terms. Expert logits and other
parameter-independent extras are cached in a store shared with every re-parameterised copy made
by `with_params`, so a gradient penalty that re-evaluates a term at perturbed parameters reuses
them instead of running the experts again.

A second store, ``step_state``, is shared by the contexts of all micro-batches of one optimizer
step (the trainer passes one dict per step): step-level values such as a gradient penalty's
``Σ_m ∇L_m`` live there, and so does each micro-batch's RNG state, so that every policy forward
of a micro-batch in train mode — the shared one, `with_params` re-evaluations, a `for_batch`
copy made in a first pass — sees the same dropout masks (see `losscraft.core.rng`).

Whether other processes share the step (data parallel, sharded parameters) is the context's
``engine`` (`losscraft.core.engine`): ``step_sum`` adds its counts up through it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from losscraft.core import lm_head, rng
from losscraft.core.engine import SINGLE_PROCESS, StepEngine
from losscraft.errors import ModelError
from losscraft.functional.linear_head import LinearHead
from losscraft.types import Batch


class StepContext:
    """Per-micro-batch state handed to loss terms.

    Args:
        model: the policy (a Hugging Face causal LM or anything with the same forward).
        batch: the micro-batch, already on the model's device.
        step_batches: every micro-batch of the current optimizer step (this one included), used
            by `step_sum` so that normalisers span the whole step under gradient accumulation.
        experts: frozen expert models by name.
        tokenizer: the policy's tokenizer (for terms that need text).
        need_hidden_states: keep the last hidden layer from the forward pass.
        params: if given, the forward runs through ``torch.func.functional_call`` with these
            tensors in place of the named parameters (see `with_params`).
        step: the global optimizer step (for schedules inside terms).
        generator: a seeded RNG for terms that sample (e.g. CRINGE).
        autocast_dtype: run forwards under ``torch.autocast`` in this dtype (e.g. bfloat16).
        step_state: a dict shared by the contexts of every micro-batch of the optimizer step
            (default: a fresh one, i.e. this context is a step of its own for memoisation).
        forward_model: the module called for this context's shared policy forward when it is
            not ``model`` itself — a ``DistributedDataParallel`` wrapper of ``model``, whose
            backward then reduces gradients over ranks. Parameters, ``functional_call``
            re-evaluations (`with_params`) and `for_batch` copies always use ``model``.
        engine: how the step's sums are combined across processes (`StepEngine`; default:
            `SingleProcess`, this process alone). The trainer passes its data-parallel or
            sharded engine (`losscraft.distributed.engines`).
    """

    def __init__(
        self,
        model: nn.Module,
        batch: Batch,
        *,
        step_batches: Sequence[Batch] | None = None,
        experts: Mapping[str, nn.Module] | None = None,
        tokenizer: Any = None,
        need_hidden_states: bool = False,
        params: Mapping[str, torch.Tensor] | None = None,
        step: int = 0,
        generator: torch.Generator | None = None,
        autocast_dtype: torch.dtype | None = None,
        step_state: dict[str, Any] | None = None,
        forward_model: nn.Module | None = None,
        engine: StepEngine | None = None,
        _shared: dict[str, Any] | None = None,
    ):
        self.model = model
        self.batch = batch
        self.step_batches = list(step_batches) if step_batches is not None else [batch]
        self.experts = dict(experts or {})
        self.tokenizer = tokenizer
        self.need_hidden_states = need_hidden_states
        self.params = params
        self.step = step
        self.generator = generator
        self.autocast_dtype = autocast_dtype
        self._outputs: Any = None
        self._head: LinearHead | None = None  # the output layer's input, when recorded
        self._logits_skipped = False  # the forward ran without forming the logits
        self._cache: dict[str, Any] = {}
        self._shared: dict[str, Any] = _shared if _shared is not None else {}
        self.step_state: dict[str, Any] = step_state if step_state is not None else {}
        self.forward_model = forward_model
        self.engine: StepEngine = engine if engine is not None else SINGLE_PROCESS

    # ----------------------------------------------------------------- policy outputs
    def _forward(self, *, skip_logits: bool = False) -> Any:
        if self._outputs is None:
            kwargs = dict(self.batch.model_inputs(self._mask_dtype(self.model)), use_cache=False,
                          output_hidden_states=self.need_hidden_states)
            # The output layer's input is recorded when the model has a plain one (for fused
            # loss heads); a forward started by `head` skips the (B, T, V) logits altogether.
            capture = lm_head.capture_head(self.model, skip_logits=skip_logits) \
                if skip_logits or lm_head.has_output_layer(self.model) else nullcontext(None)
            with self._autocast(), self._same_randomness(), capture as box:
                if self.params is None:
                    self._outputs = (self.forward_model or self.model)(**kwargs)
                else:
                    self._outputs = torch.func.functional_call(
                        self.model, dict(self.params), args=(), kwargs=kwargs, strict=False)
            self._head = box.head if box is not None else None
            self._logits_skipped = skip_logits
        return self._outputs

    @property
    def logits(self) -> torch.Tensor:
        """Policy logits ``(B, T, V)`` aligned with ``batch.targets``."""
        out = self._forward()
        if not self._logits_skipped:
            return out.logits
        # The forward ran for a fused head (no logits); form them once from its input.
        if "logits" not in self._cache:
            with self._autocast():
                self._cache["logits"] = self._head.logits()
        return self._cache["logits"]

    @property
    def head(self) -> LinearHead:
        """The policy's last hidden states and output layer (`LinearHead`), for fused loss heads.

        If the policy forward has not run yet, it runs without forming the ``(B, T, V)`` logits
        (`losscraft.core.lm_head`); ``logits`` is then computed from this head on first access.
        Raises `ModelError` for a model whose logits are not exactly ``lm_head(hidden)``."""
        self._forward(skip_logits=True)
        if self._head is None:
            lm_head.output_layer(self.model)  # raises the reason
            raise ModelError("the output layer's input was not recorded")
        return self._head

    def expert_head(self, name: str) -> LinearHead:
        """Expert ``name``'s last hidden states and output layer (detached), computed once without
        gradient and without its ``(B, T, V)`` logits, shared like `expert_logits`."""
        key = f"expert_head:{name}"
        if key not in self._shared:
            expert = self._expert(name)
            with torch.no_grad(), self._autocast(), \
                    lm_head.capture_head(expert, skip_logits=True) as box:
                expert(**self.batch.model_inputs(self._mask_dtype(expert)), use_cache=False)
            h = box.head
            self._shared[key] = LinearHead(h.hidden.detach(), h.weight.detach(),
                                           None if h.bias is None else h.bias.detach())
        return self._shared[key]

    @property
    def hidden_states(self) -> torch.Tensor:
        """Last hidden layer ``(B, T, H)``; needs a term with ``"hidden_states"`` in
        ``requires``."""
        out = self._forward()
        if getattr(out, "hidden_states", None) is None:
            raise ModelError("hidden states were not kept: declare requires={'hidden_states'} "
                             "on the loss that reads them")
        return out.hidden_states[-1]

    def _mask_dtype(self, model: nn.Module) -> torch.dtype:
        """The dtype attention runs in: autocast's, else the model's parameter dtype."""
        return self.autocast_dtype or next(model.parameters()).dtype

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.batch.input_ids.device.type, dtype=self.autocast_dtype)

    def _same_randomness(self):
        """In train mode: record the RNG state before this micro-batch's first policy forward
        (in ``step_state``) and replay it for every later one, so all see the same dropout."""
        if not self.model.training:
            return nullcontext()
        key = f"rng:{id(self.batch)}"
        device = self.batch.input_ids.device
        if key not in self.step_state:
            self.step_state[key] = rng.snapshot(device)
            return nullcontext()
        return rng.replay(self.step_state[key], device)

    # ----------------------------------------------------------------- experts and caches
    def expert_logits(self, name: str) -> torch.Tensor:
        """Logits of frozen expert ``name`` on this batch: computed once without gradient,
        then shared by every term and every `with_params` copy of this context."""
        key = f"expert_logits:{name}"
        if key not in self._shared:
            expert = self._expert(name)
            with torch.no_grad(), self._autocast():
                out = expert(**self.batch.model_inputs(self._mask_dtype(expert)), use_cache=False)
            self._shared[key] = out.logits.detach()
        return self._shared[key]

    def _expert(self, name: str) -> nn.Module:
        if name not in self.experts:
            raise ModelError(f"expert '{name}' is not loaded; declared experts: "
                             f"{sorted(self.experts) or 'none'} (add [experts.{name}] to "
                             "the recipe)")
        return self.experts[name]

    def evaluate(self, loss: Callable[["StepContext"], Any]) -> Any:
        """``loss(self)``, computed once per context and then reused: a loss that is both a term
        of the objective and the subject of a gradient penalty (FlatGD's safety loss) is
        evaluated once, so its head and its graph are shared. A loss that samples (CRINGE)
        therefore sees one draw per context; `with_params` / `for_batch` copies evaluate
        afresh."""
        return self.cached(f"loss:{id(loss)}", lambda: loss(self))

    def cached(self, key: str, fn: Callable[[], Any]) -> Any:
        """Memoise ``fn()`` for this context (values may depend on the parameters)."""
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def shared(self, key: str, fn: Callable[[], Any]) -> Any:
        """Memoise a parameter-independent ``fn()`` across this context and its
        `with_params` copies."""
        if key not in self._shared:
            self._shared[key] = fn()
        return self._shared[key]

    def step_sum(self, key: str, fn: Callable[[Batch], float | torch.Tensor]) -> float:
        """``Σ fn(b)`` over every micro-batch of the optimizer step, memoised under ``key`` for
        the whole step. Use it as a normaliser: e.g. ``ctx.step_sum("response_tokens",
        lambda b: b.response_mask.sum())``. Returns at least 1 to keep divisions finite.

        With a data-parallel ``engine`` the sum spans every rank's micro-batches (an
        all-reduce), so losses are normalised over the global batch. It is then a collective:
        call it on every micro-batch whatever the batch holds (not inside ``if`` on local
        data)."""
        skey = f"step_sum:{key}"
        if skey not in self.step_state:
            total = self.engine.all_reduce_sum(sum(float(fn(b)) for b in self.step_batches))
            self.step_state[skey] = max(total, 1.0)
        return self.step_state[skey]

    # ----------------------------------------------------------------- parameters
    def trainable_params(self) -> dict[str, torch.Tensor]:
        """The parameters being optimised (``requires_grad``), by name; the tensors in use in
        this context (perturbed ones for a `with_params` copy)."""
        own = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        if self.params is not None:
            own.update({n: t for n, t in self.params.items() if n in own})
        return own

    def with_params(self, params: Mapping[str, torch.Tensor]) -> "StepContext":
        """A copy of this context whose policy forward uses ``params`` (a mapping from parameter
        names to tensors; unnamed parameters keep their values). Expert logits, step sums and
        other `shared` values are reused; the policy forward is not."""
        return StepContext(
            self.model, self.batch, step_batches=self.step_batches, experts=self.experts,
            tokenizer=self.tokenizer, need_hidden_states=self.need_hidden_states,
            params=params, step=self.step, generator=self.generator,
            autocast_dtype=self.autocast_dtype, step_state=self.step_state, engine=self.engine,
            _shared=self._shared)

    def for_batch(self, batch: Batch) -> "StepContext":
        """A context for another micro-batch of the same step: same model, experts,
        parameters, ``step_state`` and engine; its own forward and caches (e.g. for a first
        pass over the step)."""
        return StepContext(
            self.model, batch, step_batches=self.step_batches, experts=self.experts,
            tokenizer=self.tokenizer, need_hidden_states=self.need_hidden_states,
            params=self.params, step=self.step, generator=self.generator,
            autocast_dtype=self.autocast_dtype, step_state=self.step_state, engine=self.engine)

