"""One chunk of the fused JS forward: per-row divergences and ``∂loss/∂logits``, two bodies.

Given the chunk's policy logits ``z_p`` and each reference's logits ``z_k``, row weights ``w``
and coefficients ``c_k``: ``JS_k = ½ (KL(P‖M_k) + KL(Q_k‖M_k))`` per row, the policy's
``∂/∂z_p = ½ w p ⊙ (Σ_k c_k (log p − log m_k) − Σ_k c_k KL(P‖M_k))`` and each reference's
``∂/∂z_k = ½ c_k w q_k ⊙ (log q_k − log m_k − KL(Q_k‖M_k))``.

- `eager_chunk`: in-place torch ops (a dozen passes over ``(chunk, V)``, few live buffers);
- `compiled_chunk`: the same formulas written for ``torch.compile`` (`losscraft.functional.
  compiled`), which fuses them into a few loops; ``log m = log(½(p + q))`` there (one ``log``
  instead of ``logaddexp``'s ``exp`` and ``log1p``), floored like the log-probabilities.
"""

from __future__ import annotations

import math

import torch

from losscraft.functional import compiled as compiling
from losscraft.functional.js import _LOG_FLOOR

_LOG2 = math.log(2.0)
#: Rows per call of the compiled body: about this many elements (≈ 4 MiB per float32 tensor),
#: so the few ``(rows, V)`` intermediates Inductor keeps between its loops stay in cache.
SLICE_ELEMENTS = 1 << 20


@torch.no_grad()
def eager_chunk(z_p, ref_logits, coefs, w, need_p: bool, need_refs, acc):
    """``(js (c, K), dz_p | None, [dz_k | None])``; ``ref_logits`` are callables (each reference's
    logits are formed only when needed), ``coefs`` floats."""
    log_p = torch.log_softmax(z_p.to(acc), -1).clamp_min_(_LOG_FLOOR)
    del z_p
    p = log_p.exp()
    acc_d = kl_mix = None
    js, dz_refs = [], []
    for k, make in enumerate(ref_logits):
        log_q = torch.log_softmax(make().to(acc), -1).clamp_min_(_LOG_FLOOR)
        log_m = torch.logaddexp(log_p, log_q).sub_(_LOG2)
        q = log_q.exp()
        d_q = log_q.sub_(log_m)                       # log q − log m
        kl_q = (q * d_q).sum(-1)
        d_p = log_m.neg_().add_(log_p)                # log p − log m
        kl_p = (p * d_p).sum(-1)
        js.append(0.5 * (kl_p + kl_q))
        c = coefs[k]
        if need_p:
            acc_d = d_p.mul_(c) if acc_d is None else acc_d.add_(d_p, alpha=c)
            kl_mix = c * kl_p if kl_mix is None else kl_mix.add_(kl_p, alpha=c)
        dz_refs.append(d_q.sub_(kl_q.unsqueeze(-1)).mul_(q).mul_(w).mul_(0.5 * c)
                       if need_refs[k] else None)
    dz_p = None
    if need_p:
        dz_p = acc_d.sub_(kl_mix.unsqueeze(-1)).mul_(p).mul_(w).mul_(0.5)
    return torch.stack(js, -1), dz_p, dz_refs


def compiled_chunk(z_p: torch.Tensor, refs: tuple[torch.Tensor, ...], w: torch.Tensor,
                   coefs: torch.Tensor, need_p: bool, need_refs: tuple[bool, ...]):
    """`eager_chunk` for ``torch.compile``: ``refs`` are the references' logits, ``coefs`` a
    ``(K,)`` tensor (so new coefficients do not recompile), ``w`` ``(c, 1)``."""
    acc = torch.promote_types(z_p.dtype, torch.float32)
    log_p = torch.log_softmax(z_p.to(acc), -1).clamp_min(_LOG_FLOOR)
    p = log_p.exp()
    js, dz_refs = [], []
    d_mix = kl_mix = None
    for k, z_q in enumerate(refs):
        log_q = torch.log_softmax(z_q.to(acc), -1).clamp_min(_LOG_FLOOR)
        q = log_q.exp()
        log_m = torch.log(0.5 * (p + q)).clamp_min(_LOG_FLOOR)
        d_p, d_q = log_p - log_m, log_q - log_m
        kl_p = (p * d_p).sum(-1, keepdim=True)
        kl_q = (q * d_q).sum(-1, keepdim=True)
        js.append(0.5 * (kl_p + kl_q))
        c = coefs[k].to(acc)
        if need_p:
            d_mix = c * d_p if d_mix is None else d_mix + c * d_p
            kl_mix = c * kl_p if kl_mix is None else kl_mix + c * kl_p
        dz_refs.append(0.5 * c * w * q * (d_q - kl_q) if need_refs[k] else None)
    dz_p = 0.5 * w * p * (d_mix - kl_mix) if need_p else None
    return torch.cat(js, -1), dz_p, dz_refs


@torch.no_grad()
def sliced_chunk(z_p, refs, w, coefs, need_p: bool, need_refs, acc):
    """`compiled_chunk` (through `losscraft.functional.compiled`) over slices of about
    `SLICE_ELEMENTS` elements, so its intermediates stay small and in cache; returns like
    `eager_chunk`. The policy's gradient is written over ``z_p`` (dead by then)."""
    c, vocab = z_p.shape
    rows = max(1, SLICE_ELEMENTS // max(vocab, 1))
    js = torch.empty((c, len(refs)), dtype=acc, device=z_p.device)
    dz_refs = [torch.empty(z.shape, dtype=acc, device=z.device) if need else None
               for z, need in zip(refs, need_refs)]
    for i in range(0, c, rows):
        j = min(c, i + rows)
        js[i:j], dz_p, dz_k = compiling.run("fused_js", compiled_chunk, z_p[i:j],
                                            tuple(z[i:j] for z in refs), w[i:j], coefs,
                                            need_p, tuple(need_refs))
        if need_p:
            z_p[i:j] = dz_p
        for out, part in zip(dz_refs, dz_k):
            if out is not None:
                out[i:j] = part
    return js, z_p if need_p else None, dz_refs
