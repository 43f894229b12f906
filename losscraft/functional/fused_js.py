"""Fused hidden states → Jensen–Shannon loss: the safety loss without any ``(tokens, V)`` tensor.

`fused_linear_js` takes the policy's last hidden states and output weight (a `LinearHead`) and,
for each reference (an expert), either its `LinearHead` or its logits, and returns
``Σ_k c_k · JS(policy, ref_k)`` averaged over the masked positions. The logits of all models are
computed a chunk of rows at a time (``chunk @ weight.T``), their log-softmaxes and mixtures
formed, the chunk's divergences summed — and nothing of size ``(tokens, V)`` is kept.

Backward, two modes chosen automatically:

- **Gradient in the forward** (plain ``loss.backward()``, the training step): while a chunk's
  probabilities exist, the forward already forms ``∂loss/∂logits`` for the chunk and folds it
  into ``∂hidden = dz @ W`` and ``∂W += dzᵀ @ hidden`` (written in place). Backward only scales
  these by the incoming gradient, in place, and hands them to autograd without a copy: the
  forward's ``∂W`` buffer becomes ``W.grad`` (`linear_head.hand_over`). Same matmul count as the
  naive version (three logits + two gradient matmuls for the policy), no recomputation. The
  chunk's elementwise body is compiled where possible (`losscraft.functional.compiled`,
  `losscraft.functional.js_chunk`).
- **Recompute** (``create_graph=True``, ``torch.func`` transforms — the exact gradient-norm
  penalty): backward recomputes each chunk in differentiable torch ops, so double backward and
  ``grad``/``vjp`` nesting work. In that mode the second-order graph keeps each chunk's
  intermediates, i.e. memory grows back to ``O(tokens · V)`` for the second derivative.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from losscraft.functional import compiled as compiling
from losscraft.functional.js import _chunk_terms
from losscraft.functional.js_chunk import eager_chunk, sliced_chunk
from losscraft.functional.linear_head import (LinearHead, check_chunk_size,
                                              accumulate_head_grads, hand_over, head_grads,
                                              linear_logits, rows_per_chunk)
from losscraft.functional.safety import safety_weights

Reference = LinearHead | torch.Tensor


def _functorch_active() -> bool:
    return bool(torch._C._are_functorch_transforms_active())


class _Layout:
    """How the flat tensor arguments map to the policy head and the references."""

    def __init__(self, kinds: tuple[str, ...], compiled: bool | None = None):
        self.kinds = kinds  # "head" or "logits", one per reference
        self.compiled = compiled  # chunk body compiled: True / False / None (by size)
        self.slices = []
        i = 3  # policy: hidden, weight, bias
        for kind in kinds:
            n = 3 if kind == "head" else 1
            self.slices.append((i, i + n))
            i += n
        self.size = i


def _chunk_logits(kind: str, tensors, s: int, e: int) -> torch.Tensor:
    if kind == "head":
        h, w, b = tensors
        return linear_logits(h[s:e], w, b)
    return tensors[0][s:e]


def _softmax_grad(log_x: torch.Tensor, log_m: torch.Tensor) -> torch.Tensor:
    """``∂JS/∂logits`` of the ``x`` side: ``x ⊙ (u − Σ x u)``, ``u = ½(log x − log m)``."""
    x = log_x.exp()
    u = 0.5 * (log_x - log_m)
    return x * (u - (x * u).sum(-1, keepdim=True))


class _FusedJS(torch.autograd.Function):
    """Args: layout, chunk, coefs, weights (n,), then the flat tensors. Returns ``(loss, sums
    (K,), *pre)``: ``loss = Σ_k c_k Σ_r w_r JS_rk``, ``sums[k] = Σ_r w_r JS_rk`` (nats), and the
    gradients of ``loss`` formed in the forward (``None`` when not formed)."""

    @staticmethod
    def forward(layout: _Layout, chunk: int, coefs: tuple[float, ...], weights: torch.Tensor,
                *tensors):
        hp, wp, bp = tensors[:3]
        refs = [tensors[a:b] for a, b in layout.slices]
        n = hp.shape[0]
        acc = torch.promote_types(torch.promote_types(hp.dtype, wp.dtype), torch.float32)
        pre_mode = not _functorch_active() and any(
            t is not None and t.requires_grad for t in tensors)
        need = [pre_mode and t is not None and t.requires_grad for t in tensors]
        pre: list[torch.Tensor | None] = [None] * len(tensors)
        for i, t in enumerate(tensors):
            if need[i]:
                dtype = acc if _is_param_slot(layout, i) else t.dtype
                pre[i] = torch.zeros(t.shape, dtype=dtype, device=t.device)
        sums = torch.zeros(len(refs), dtype=acc, device=hp.device)
        need_p = any(need[:3])
        need_refs = tuple(any(need[a:b]) for a, b in layout.slices)
        fast = compiling.use_compiled(layout.compiled, min(n, chunk) * wp.shape[0], hp.device)
        coefs_t = torch.tensor(coefs, dtype=acc, device=hp.device)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            w = weights[s:e].to(acc).unsqueeze(-1)
            z_p = linear_logits(hp[s:e], wp, bp)
            if fast:
                z_refs = tuple(_chunk_logits(k, r, s, e) for k, r in zip(layout.kinds, refs))
                js, dz_p, dz_refs = sliced_chunk(z_p, z_refs, w, coefs_t, need_p, need_refs,
                                                 acc)
                del z_refs
            else:
                ref_logits = [lambda k=k, r=r: _chunk_logits(k, r, s, e)
                              for k, r in zip(layout.kinds, refs)]
                js, dz_p, dz_refs = eager_chunk(z_p, ref_logits, coefs, w, need_p, need_refs,
                                                acc)
            del z_p
            sums += (w * js).sum(0)
            if dz_p is not None:
                _add_head_grads(pre, 0, dz_p, (hp, wp, bp), s, e, need)
            for k, (a, b) in enumerate(layout.slices):
                if dz_refs[k] is None:
                    continue
                if layout.kinds[k] == "head":
                    _add_head_grads(pre, a, dz_refs[k], tensors[a:b], s, e, need)
                else:
                    pre[a][s:e] = dz_refs[k]
            dz_p = dz_refs = None
        loss = (sums * torch.tensor(coefs, dtype=acc, device=sums.device)).sum()
        pre = [None if g is None else g.to(t.dtype) for g, t in zip(pre, tensors)]
        return (loss, sums, *pre)

    @staticmethod
    def setup_context(ctx, inputs, output):
        layout, chunk, coefs, weights, *tensors = inputs
        ctx.layout, ctx.chunk, ctx.coefs = layout, chunk, coefs
        ctx.pre = list(output[2:])
        ctx.mark_non_differentiable(output[1], *(g for g in ctx.pre if g is not None))
        ctx.set_materialize_grads(False)  # no (V, H) zeros for the unused outputs' gradients
        ctx.save_for_backward(weights, *tensors)

    @staticmethod
    def backward(ctx, g_loss, _g_sums, *_g_pre):
        weights, *tensors = ctx.saved_tensors
        need = ctx.needs_input_grad[4:]
        if g_loss is None:
            return (None,) * (4 + len(tensors))
        pre, ctx.pre = ctx.pre, None  # handed over once: no reference may stay behind
        grads = None if torch.is_grad_enabled() else hand_over(pre, need, g_loss)
        del pre
        if grads is None:
            grads = _recompute_grads(ctx.layout, ctx.chunk, ctx.coefs, weights, tensors,
                                     need, g_loss)
        return (None, None, None, None, *grads)


def _is_param_slot(layout: _Layout, i: int) -> bool:
    """Weight and bias slots (accumulated over chunks in float32)."""
    if i in (1, 2):
        return True
    for kind, (a, _) in zip(layout.kinds, layout.slices):
        if kind == "head" and i in (a + 1, a + 2):
            return True
    return False


def _add_head_grads(pre, a: int, dz, head, s: int, e: int, need) -> None:
    h, w, b = head
    accumulate_head_grads(dz, h[s:e], w, b, pre[a][s:e] if need[a] else None,
                          pre[a + 1] if need[a + 1] else None,
                          pre[a + 2] if need[a + 2] else None)


def _recompute_grads(layout, chunk, coefs, weights, tensors, need, g_loss):
    """Backward by recomputing each chunk in differentiable ops (double backward works)."""
    hp, wp, bp = tensors[:3]
    refs = [tensors[a:b] for a, b in layout.slices]
    n = hp.shape[0]
    acc = torch.promote_types(torch.promote_types(hp.dtype, wp.dtype), torch.float32)
    parts: list[list[torch.Tensor]] = [[] for _ in tensors]  # row-wise grads, per chunk
    sums: list[torch.Tensor | None] = [None] * len(tensors)  # weight / bias grads

    def add(i, value, rowwise):
        if value is None:
            return
        if rowwise:
            parts[i].append(value)
        else:
            sums[i] = value if sums[i] is None else sums[i] + value

    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        scale = (weights[s:e].to(acc) * g_loss.to(acc)).unsqueeze(-1)
        log_p, terms = _chunk_terms(linear_logits(hp[s:e], wp, bp),
                                    tuple(_chunk_logits(k, r, s, e)
                                          for k, r in zip(layout.kinds, refs)))
        if any(need[:3]):
            dz = sum(c * _softmax_grad(log_p, lm) for c, (_, lm) in zip(coefs, terms)) * scale
            gh, gw, gb = head_grads(dz, hp[s:e], wp, bp, tuple(need[:3]))
            add(0, gh, True), add(1, gw, False), add(2, gb, False)
        for k, ((a, b), (log_q, log_m)) in enumerate(zip(layout.slices, terms)):
            if not any(need[a:b]):
                continue
            dz = coefs[k] * _softmax_grad(log_q, log_m) * scale
            if layout.kinds[k] == "head":
                h, w, bias = tensors[a:b]
                gh, gw, gb = head_grads(dz, h[s:e], w, bias, tuple(need[a:b]))
                add(a, gh, True), add(a + 1, gw, False), add(a + 2, gb, False)
            else:
                add(a, dz, True)
    out = []
    for i, t in enumerate(tensors):
        if not need[i] or t is None:
            out.append(None)
        elif parts[i]:
            out.append(torch.cat(parts[i], 0).to(t.dtype))
        elif sums[i] is not None:
            out.append(sums[i].to(t.dtype))
        else:
            out.append(torch.zeros_like(t))
    return out


def _flat_reference(ref: Reference, positions: torch.Size, index: torch.Tensor | None,
                     vocab: int) -> tuple[str, list]:
    if isinstance(ref, LinearHead):
        if ref.positions != positions:
            raise ValueError(f"reference hidden states cover positions {tuple(ref.positions)}, "
                             f"the policy's {tuple(positions)}")
        if ref.vocab != vocab:
            raise ValueError(f"reference vocabulary {ref.vocab} ≠ policy vocabulary {vocab} "
                             "(experts must share the policy's vocabulary)")
        rows = ref.rows(index)
        return "head", [rows.hidden, rows.weight, rows.bias]
    if not torch.is_tensor(ref):
        raise TypeError(f"a reference must be a LinearHead or a logits tensor, got "
                        f"{type(ref).__name__}")
    if ref.shape != (*positions, vocab):
        raise ValueError(f"reference logits shape {tuple(ref.shape)} ≠ "
                         f"{(*tuple(positions), vocab)} (the policy's positions × vocabulary)")
    flat = ref.reshape(-1, vocab)
    return "logits", [flat if index is None else flat.index_select(0, index)]


def fused_linear_js(
    policy: LinearHead,
    *references: Reference,
    coefficients: Sequence[float] | None = None,
    mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    log_base: float = math.e,
    normalizer: float | torch.Tensor | None = None,
    compiled: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``Σ_k c_k · JS(softmax(policy logits), softmax(ref_k logits))``, masked mean over positions,
    computed from hidden states chunk by chunk (no ``(tokens, V)`` tensor for any model).

    Args:
        policy: the policy's `LinearHead` (``hidden`` ``(..., H)``, ``weight`` ``(V, H)``).
        *references: one or more experts, each a `LinearHead` over the same positions (its own
            weight; may be frozen) or ``(..., V)`` logits.
        coefficients: ``c_k`` per reference (default: all 1).
        mask: ``policy.hidden.shape[:-1]`` weights; positions with weight 0 are skipped.
        chunk_size: rows per chunk (default: `linear_head.rows_per_chunk` without its unfused
            block: 128 rows at V = 49,152, 256 from 512 rows on).
        log_base: logarithm base of the divergences (``2``: each JS in ``[0, 1]``).
        normalizer: divide by this instead of ``Σ mask`` (e.g. the step's token count).
        compiled: run each chunk's elementwise body through ``torch.compile`` (``None``: where
            a compiler is available and the chunk is large, see `losscraft.functional.compiled`;
            ``LOSSCRAFT_COMPILE=0`` turns it off). Same values either way.

    Returns:
        ``(value, divergences)``: the differentiable scalar, and the ``(K,)`` detached masked-mean
        divergences (in ``log_base`` units), one per reference.
    """
    if not references:
        raise ValueError("fused_linear_js needs at least one reference (expert)")
    if not isinstance(policy, LinearHead):
        raise TypeError(f"policy must be a LinearHead, got {type(policy).__name__}")
    if log_base <= 0 or log_base == 1:
        raise ValueError(f"log_base must be positive and ≠ 1, got {log_base}")
    check_chunk_size(chunk_size)
    coefs = tuple(float(c) for c in (coefficients if coefficients is not None
                                     else [1.0] * len(references)))
    if len(coefs) != len(references):
        raise ValueError(f"{len(coefs)} coefficients for {len(references)} references")
    positions, vocab = policy.positions, policy.vocab
    if mask is None:
        index = None
        weights = torch.ones(positions.numel(), device=policy.hidden.device)
    else:
        if mask.shape != positions:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match hidden-state "
                             f"positions {tuple(positions)}")
        flat_w = mask.reshape(-1).float()
        index = flat_w.nonzero().squeeze(1)
        weights = flat_w.index_select(0, index)
    rows = policy.rows(index)
    kinds, tensors = [], [rows.hidden, rows.weight, rows.bias]
    for ref in references:
        kind, parts = _flat_reference(ref, positions, index, vocab)
        kinds.append(kind)
        tensors += parts
    compiling.check_flag(compiled)
    # never one unchunked block: K + 1 (n, V) buffers would outgrow Liger's peak at small n
    chunk = rows_per_chunk(rows.hidden.shape[0], vocab, rows.hidden.shape[-1], chunk_size,
                           unfused_below=0)
    loss, sums, *_ = _FusedJS.apply(_Layout(tuple(kinds), compiled), chunk, coefs, weights,
                                    *tensors)
    scale = math.log(log_base)
    denom = weights.sum() if normalizer is None else normalizer
    if not torch.is_tensor(denom):
        denom = torch.tensor(float(denom), device=loss.device)
    denom = denom.to(loss.dtype).clamp_min(1.0)
    return loss / denom / scale, (sums / denom / scale).detach()


def fused_safety_loss(
    policy: LinearHead,
    clean: Reference,
    toxic: Reference,
    mask: torch.Tensor | None = None,
    *,
    beta: float = 2.0,
    gamma: float = 3.0,
    chunk_size: int | None = None,
    log_base: float = math.e,
    normalizer: float | torch.Tensor | None = None,
    compiled: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`losscraft.functional.safety_loss` from hidden states: ``γ·JS(p, clean) − β·JS(p, toxic)``.

    Arguments as in `safety_loss`, with the policy given as a `LinearHead` and each expert as a
    `LinearHead` or its logits (see `fused_linear_js`).

    Returns:
        ``(loss, js_clean, js_toxic)``; the divergences are detached (for metrics).
    """
    value, js = fused_linear_js(policy, clean, toxic, coefficients=safety_weights(beta, gamma),
                                mask=mask, chunk_size=chunk_size, log_base=log_base,
                                normalizer=normalizer, compiled=compiled)
    return value, js[0], js[1]
