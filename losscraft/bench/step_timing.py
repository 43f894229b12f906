"""One timed optimizer step of a full-step configuration (`losscraft.bench.fullstep`): where
its time goes (`SHARES`, timers around each phase) and its peak memory."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from losscraft.bench.measure import cpu_peak_supported, rss_peak_of, synchronize
from losscraft.bench.step_setup import Config
from losscraft.core import layerwise_double_backward
from losscraft.core.context import StepContext
from losscraft.core.loss import prepare_loss
from losscraft.core.penalty import GradientNormPenalty

#: Where a step's time goes, as shares of its total (see `losscraft.bench.fullstep`).
SHARES = ("policy_forward", "expert_forwards", "loss_heads", "penalty", "backward", "optimizer")


class _Timers:
    def __init__(self, device: str):
        self.device = device
        self.totals: dict[str, float] = defaultdict(float)
        self.phase = "loss_heads"
        self.nested: dict[str, float] = defaultdict(float)

    def now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()


class TimedContext(StepContext):
    """A `StepContext` that times its shared policy forward and the experts' forwards (the
    penalty's re-evaluations use plain copies: their time stays in ``penalty``)."""

    timers: _Timers

    def _forward(self, *, skip_logits: bool = False):
        if self._outputs is not None:
            return self._outputs
        t0 = self.timers.now()
        try:
            return super()._forward(skip_logits=skip_logits)
        finally:
            dt = self.timers.now() - t0
            self.timers.totals["policy_forward"] += dt
            self.timers.nested[self.timers.phase] += dt

    def _timed_expert(self, method, name):
        key = ("expert_logits:" if method is StepContext.expert_logits else "expert_head:") + name
        if key in self._shared:
            return method(self, name)
        t0 = self.timers.now()
        try:
            return method(self, name)
        finally:
            dt = self.timers.now() - t0
            self.timers.totals["expert_forwards"] += dt
            self.timers.nested[self.timers.phase] += dt

    def expert_logits(self, name: str) -> torch.Tensor:
        return self._timed_expert(StepContext.expert_logits, name)

    def expert_head(self, name: str):
        return self._timed_expert(StepContext.expert_head, name)


def one_step(config: Config, model, experts, batch, optimizer, device: str) -> dict[str, float]:
    """One optimizer step of ``config``; returns ``total`` seconds and the time shares."""
    with _prepared(config, model):
        return _one_step(config, model, experts, batch, optimizer, device)


@contextmanager
def _prepared(config: Config, model):
    """The model as ``config``'s terms prepare it (`prepare_loss`) for the step, restored after:
    configurations share one model."""
    wrapped = layerwise_double_backward.is_enabled(model)
    for term in config.terms:
        prepare_loss(term.loss, model)
    try:
        yield
    finally:
        if not wrapped:
            layerwise_double_backward.disable(model)


def _one_step(config: Config, model, experts, batch, optimizer, device: str) -> dict[str, float]:
    timers = _Timers(device)
    ctx = TimedContext(model, batch, experts=experts, need_hidden_states=config.hidden_states)
    ctx.timers = timers
    start = timers.now()
    total = None
    for term in config.terms:
        timers.phase = "penalty" if isinstance(term.loss, GradientNormPenalty) else "loss_heads"
        t0 = timers.now()
        value = ctx.evaluate(term.loss).value * term.weight  # as `WeightedObjective` does
        timers.totals[timers.phase] += timers.now() - t0
        total = value if total is None else total + value
    t0 = timers.now()
    total.backward()
    timers.totals["backward"] += timers.now() - t0
    t0 = timers.now()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    timers.totals["optimizer"] += timers.now() - t0
    out = {"total_s": timers.now() - start}
    for share in SHARES:
        out[share] = timers.totals[share] - (timers.nested[share] if share in
                                             ("loss_heads", "penalty") else 0.0)
    return out


def step_peak_bytes(config, model, experts, batch, optimizer, device: str) -> int | None:
    """Peak extra memory of one step (CUDA allocator, or CPU peak RSS in this process)."""
    if torch.device(device).type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        one_step(config, model, experts, batch, optimizer, device)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    if not cpu_peak_supported():
        return None
    return rss_peak_of(lambda: one_step(config, model, experts, batch, optimizer, device))
