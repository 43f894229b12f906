"""Naive reference loss heads (materialise every ``(tokens, V)`` tensor, autograd saves them all),
the bench-only ``js`` head (policy vs K experts), and Liger-Kernel's JSD where it is installed.

The naive versions are the textbook formulas written the way one would first write them in
torch — full-tensor ``log_softmax``, probabilities, mixtures — and are what "naive" means in
`losscraft bench` and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib.util
import math

import torch

from losscraft.core.loss import LossOutput
from losscraft.functional.fused_js import fused_linear_js
from losscraft.functional.js import js_divergence_rows, select_positions


def naive_js(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """Per-position JS (nats) from full tensors: ``½ KL(P‖M) + ½ KL(Q‖M)``."""
    log_p = torch.log_softmax(logits_p.float() if logits_p.dtype != torch.float64 else logits_p, -1)
    log_q = torch.log_softmax(logits_q.to(log_p.dtype), -1)
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    return 0.5 * ((log_p.exp() * (log_p - log_m)).sum(-1) + (log_q.exp() * (log_q - log_m)).sum(-1))


def _masked_mean(values, mask, normalizer):
    return (values * mask).sum() / max(float(normalizer), 1.0)


class NaiveSafetyLoss:
    """``γ·JS(p, clean) − β·JS(p, toxic)`` over full tensors, with the parameters of ``plugin``
    (a `SafetyLoss`)."""

    def __init__(self, plugin):
        self.beta, self.gamma, self.log_base = plugin.beta, plugin.gamma, plugin.log_base
        self.experts = tuple(plugin.experts)

    def __call__(self, ctx) -> LossOutput:
        clean, toxic = self.experts
        mask = ctx.batch.response_mask
        tokens = ctx.step_sum("response_tokens", lambda b: b.response_mask.sum())
        scale = math.log(self.log_base)
        js_c = _masked_mean(naive_js(ctx.logits, ctx.expert_logits(clean)), mask, tokens) / scale
        js_t = _masked_mean(naive_js(ctx.logits, ctx.expert_logits(toxic)), mask, tokens) / scale
        return LossOutput(self.gamma * js_c - self.beta * js_t)


class NaiveNLL:
    """Token NLL through a full ``log_softmax`` copy of the logits (rows ``"all"``)."""

    def __init__(self, plugin):
        if getattr(plugin, "rows", "all") != "all":
            raise ValueError("the naive nll reference covers rows='all' only")

    def __call__(self, ctx) -> LossOutput:
        batch = ctx.batch
        tokens = ctx.step_sum("nll_tokens:all", lambda b: b.response_mask.sum())
        logp = torch.log_softmax(ctx.logits.float() if ctx.logits.dtype != torch.float64
                                 else ctx.logits, -1)
        picked = logp.gather(-1, batch.targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        mask = batch.response_mask * (batch.targets >= 0)
        return LossOutput(-(picked * mask).sum() / max(float(tokens), 1.0))


#: objective name → naive reference factory (given the plugin instance with default parameters).
NAIVE = {"safety_loss": NaiveSafetyLoss, "nll": NaiveNLL}


class JSHead:
    """Bench-only head: ``Σ_k JS(policy, expert_k)`` over K experts (``--experts``), masked mean.

    Args:
        variant: ``"naive"`` (`naive_js` on full tensors), ``"chunked"`` (`js_divergence_rows`
            on the logits) or ``"fused"`` (`fused_linear_js` from hidden states).
        names: the experts' names (one per expert).
    """

    def __init__(self, variant: str, names: tuple[str, ...]):
        self.variant, self.experts = variant, names

    def __call__(self, ctx) -> LossOutput:
        mask = ctx.batch.response_mask
        if self.variant == "fused":
            value, _ = fused_linear_js(ctx.head, *(ctx.expert_head(n) for n in self.experts),
                                       mask=mask)
            return LossOutput(value)
        refs = [ctx.expert_logits(n) for n in self.experts]
        if self.variant == "naive":
            total = sum(naive_js(ctx.logits, q) for q in refs)
            return LossOutput(_masked_mean(total, mask, mask.sum()))
        weights, rows, *ref_rows = select_positions(mask, ctx.logits, *refs)
        js = js_divergence_rows(rows, *ref_rows).sum(-1)
        return LossOutput((js * weights).sum() / weights.sum().clamp_min(1.0))


def liger_available() -> bool:
    """Whether ``liger_kernel`` can be imported (it needs a GPU and Triton)."""
    return importlib.util.find_spec("liger_kernel") is not None


class LigerSafetyLoss:
    """The safety loss with Liger-Kernel's JSD (``beta = 0.5``: the symmetric JS): `LigerJSD` on
    log-probabilities (``fused=False``, from logits) or `LigerFusedLinearJSD` from hidden states
    and weights (``fused=True``). CUDA only. Liger averages over rows, so the response mask must
    be all ones (it is, in the benchmark's batches without negatives)."""

    def __init__(self, plugin, *, fused: bool):
        self.beta, self.gamma, self.log_base = plugin.beta, plugin.gamma, plugin.log_base
        self.experts = tuple(plugin.experts)
        self.fused = fused
        if fused:
            from liger_kernel.transformers.fused_linear_jsd import LigerFusedLinearJSD
            self.jsd = LigerFusedLinearJSD(jsd_beta=0.5, temperature=1.0)
        else:
            from liger_kernel.transformers.jsd import LigerJSD
            self.jsd = LigerJSD(beta=0.5)

    def __call__(self, ctx) -> LossOutput:
        if not bool((ctx.batch.response_mask == 1).all()):
            raise ValueError("the Liger comparison needs every position scored")
        clean, toxic = self.experts
        if self.fused:
            h = ctx.head
            hidden, weight = h.hidden.reshape(-1, h.hidden.shape[-1]), h.weight

            def js(name):
                e = ctx.expert_head(name)
                return self.jsd(hidden, weight, e.hidden.reshape(-1, e.hidden.shape[-1]),
                                e.weight)
        else:
            log_p = torch.log_softmax(ctx.logits.float(), -1).reshape(-1, ctx.logits.shape[-1])

            def js(name):
                q = ctx.expert_logits(name)
                return self.jsd(log_p, torch.log_softmax(q.float(), -1).reshape(log_p.shape))
        scale = math.log(self.log_base)
        return LossOutput((self.gamma * js(clean) - self.beta * js(toxic)) / scale)
