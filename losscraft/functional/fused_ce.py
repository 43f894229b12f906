"""Fused linear cross-entropy: target log-probabilities straight from hidden states.

``log softmax(hidden @ W.T + b)[target]`` for each row, computed a chunk of rows at a time, so
the ``(tokens, V)`` logits never exist (Liger's *fused linear cross-entropy*, in plain torch).

- `fused_linear_logprobs`: one log-probability per row, for sequence scores (`sequence_logprob`
  and `segment_logprobs` of the n-pair term). Its backward recomputes each chunk's logits (one
  extra ``chunk @ W.T``) in differentiable ops, so double backward works.
- `fused_linear_nll`: the masked mean token NLL (a scalar). Its forward already forms the
  gradient while each chunk's probabilities exist (no recomputation in a plain backward), in
  the chunk's own buffer, and accumulates ``∂W`` in place into one ``(V, H)`` buffer that
  becomes ``W.grad`` (no copy); under ``create_graph=True`` or ``torch.func`` it falls back to
  the recomputing backward. Inputs whose logits are no larger than the weight are one chunk
  (`linear_head.rows_per_chunk`).
"""

from __future__ import annotations

import torch

from losscraft.functional.linear_head import (LinearHead, accumulate_head_grads,
                                              check_chunk_size, hand_over,
                                              head_grads, linear_logits, rows_per_chunk)


def _acc(h: torch.Tensor, w: torch.Tensor) -> torch.dtype:
    return torch.promote_types(torch.promote_types(h.dtype, w.dtype), torch.float32)


def _chunk_logprob_grad(z: torch.Tensor, y: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``∂(Σ_r g_r · log softmax(z_r)[y_r]) / ∂z`` = ``g ⊙ (onehot(y) − softmax(z))``."""
    dz = -torch.softmax(z, -1) * g.unsqueeze(-1)
    return dz.scatter_add(1, y.unsqueeze(-1), g.unsqueeze(-1))


class _FusedLogprobs(torch.autograd.Function):
    """Args: chunk, weights (``None``: per-row output; a tensor: scalar ``Σ w·logp``), targets
    (n,), hidden (n, H), weight (V, H), bias. Returns ``(out, *pre)``."""

    @staticmethod
    def forward(chunk, weights, targets, hidden, weight, bias):
        acc = _acc(hidden, weight)
        n = hidden.shape[0]
        tensors = (hidden, weight, bias)
        pre_mode = (weights is not None and not torch._C._are_functorch_transforms_active()
                    and any(t is not None and t.requires_grad for t in tensors))
        need = tuple(pre_mode and t is not None and t.requires_grad for t in tensors)
        pre = [torch.zeros(t.shape, dtype=t.dtype if i == 0 else acc, device=t.device)
               if need[i] else None for i, t in enumerate(tensors)]
        values = torch.empty(n, dtype=acc, device=hidden.device)
        for s in range(0, n, chunk):
            e = min(n, s + chunk)
            z = linear_logits(hidden[s:e], weight, bias).to(acc)
            y = targets[s:e].unsqueeze(-1)
            if not pre_mode:
                values[s:e] = (z.gather(-1, y) - torch.logsumexp(z, -1, keepdim=True)).squeeze(-1)
                continue
            # in place in z's buffer (no temporary of its size): e = exp(z − max), Σe, then
            # log p_y = z_y − max − log Σe and ∂/∂z = g ⊙ (onehot(y) − e / Σe)
            z.sub_(z.amax(-1, keepdim=True))
            picked = z.gather(-1, y)
            total = z.exp_().sum(-1, keepdim=True)
            values[s:e] = (picked - total.log()).squeeze(-1)
            g = weights[s:e].to(acc).unsqueeze(-1)
            dz = z.mul_(-g / total).scatter_add_(1, y, g)
            accumulate_head_grads(dz, hidden[s:e], weight, bias, pre[0][s:e] if need[0] else None,
                                  pre[1], pre[2])
            del z, dz
        out = values if weights is None else (values * weights.to(acc)).sum()
        pre = [None if g is None else g.to(t.dtype) for g, t in zip(pre, tensors)]
        return (out, *pre)

    @staticmethod
    def setup_context(ctx, inputs, output):
        chunk, weights, targets, hidden, weight, bias = inputs
        ctx.chunk = chunk
        ctx.scalar = weights is not None
        ctx.pre = list(output[1:])
        ctx.mark_non_differentiable(*(g for g in ctx.pre if g is not None))
        ctx.set_materialize_grads(False)  # no (V, H) zeros for the unused outputs' gradients
        ctx.save_for_backward(weights if weights is not None else None, targets, hidden, weight,
                              bias)

    @staticmethod
    def backward(ctx, g_out, *_g_pre):
        weights, targets, hidden, weight, bias = ctx.saved_tensors
        need = ctx.needs_input_grad[3:]
        if g_out is None:
            return (None,) * 6
        pre, ctx.pre = ctx.pre, None  # handed over once: no reference may stay behind
        grads = None
        if ctx.scalar and not torch.is_grad_enabled():
            grads = hand_over(pre, need, g_out)
        del pre
        if grads is not None:
            return (None, None, None, *grads)
        acc = _acc(hidden, weight)
        rows: list[torch.Tensor] = []
        gw_sum = gb_sum = None
        for s in range(0, hidden.shape[0], ctx.chunk):
            e = min(hidden.shape[0], s + ctx.chunk)
            g = (weights[s:e].to(acc) * g_out.to(acc)) if ctx.scalar else g_out[s:e].to(acc)
            z = linear_logits(hidden[s:e], weight, bias).to(acc)
            dz = _chunk_logprob_grad(z, targets[s:e], g)
            gh, gw, gb = head_grads(dz, hidden[s:e], weight, bias, tuple(need))
            if gh is not None:
                rows.append(gh)
            if gw is not None:
                gw_sum = gw if gw_sum is None else gw_sum + gw
            if gb is not None:
                gb_sum = gb if gb_sum is None else gb_sum + gb

        def finish(value, t, nd):
            if not nd or t is None:
                return None
            return torch.zeros_like(t) if value is None else value.to(t.dtype)

        gh_all = torch.cat(rows, 0) if rows else None
        return (None, None, None, finish(gh_all, hidden, need[0]),
                finish(gw_sum, weight, need[1]), finish(gb_sum, bias, need[2]))


def _check(head: LinearHead, targets: torch.Tensor) -> None:
    if not isinstance(head, LinearHead):
        raise TypeError(f"head must be a LinearHead, got {type(head).__name__}")
    if targets.shape != head.positions:
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match hidden-state "
                         f"positions {tuple(head.positions)}")


def fused_linear_logprobs(head: LinearHead, targets: torch.Tensor,
                          where: torch.Tensor | None = None, *,
                          chunk_size: int | None = None) -> torch.Tensor:
    """``log softmax(head logits)[targets]`` at the positions in ``where``, 0 elsewhere — the
    fused counterpart of `losscraft.functional.token_logprobs`.

    Args:
        head: `LinearHead` with ``hidden`` ``(..., H)``.
        targets: ``hidden.shape[:-1]`` token ids; negative ids are never scored.
        where: positions to score (default: every ``targets >= 0``).
        chunk_size: rows per chunk (default: `linear_head.rows_per_chunk`: one chunk while
            the logits are no larger than the weight, else 128 / 256 rows at V = 49,152).

    Returns:
        float32 (float64 for float64 inputs) tensor shaped like ``targets``; differentiable
        (twice) w.r.t. ``hidden``, ``weight`` and ``bias``.
    """
    _check(head, targets)
    check_chunk_size(chunk_size)
    scored = targets >= 0 if where is None else where.bool() & (targets >= 0)
    index = scored.reshape(-1).nonzero().squeeze(1)
    rows = head.rows(index)
    ids = targets.reshape(-1).index_select(0, index)
    if (ids >= head.vocab).any():
        raise ValueError(f"target id {int(ids.max())} is outside the vocabulary ({head.vocab})")
    chunk = rows_per_chunk(ids.shape[0], head.vocab, head.hidden.shape[-1], chunk_size)
    values, *_ = _FusedLogprobs.apply(chunk, None, ids, rows.hidden, rows.weight, rows.bias)
    out = torch.zeros(targets.shape, dtype=values.dtype, device=values.device)
    return out.masked_scatter(scored, values)


def fused_linear_nll(head: LinearHead, targets: torch.Tensor,
                     mask: torch.Tensor | None = None, *,
                     normalizer: float | torch.Tensor | None = None,
                     chunk_size: int | None = None) -> torch.Tensor:
    """Masked mean token NLL from hidden states — `losscraft.functional.token_nll` without the
    logits.

    Args:
        head: `LinearHead` with ``hidden`` ``(..., H)``.
        targets: ``hidden.shape[:-1]`` token ids (negative ids are ignored).
        mask: token weights (default ``targets >= 0``).
        normalizer: divide by this instead of ``Σ mask``.
        chunk_size: rows per chunk (default: `linear_head.rows_per_chunk`).

    Returns:
        A scalar (float32; float64 for float64 inputs), 0 when the mask is empty.
    """
    _check(head, targets)
    check_chunk_size(chunk_size)
    valid = targets >= 0
    weight = valid.float() if mask is None else mask.float() * valid
    if mask is not None and mask.shape != targets.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} ≠ targets shape {tuple(targets.shape)}")
    flat = weight.reshape(-1)
    index = flat.nonzero().squeeze(1)
    rows = head.rows(index)
    ids = targets.reshape(-1).index_select(0, index)
    if (ids >= head.vocab).any():
        raise ValueError(f"target id {int(ids.max())} is outside the vocabulary ({head.vocab})")
    chunk = rows_per_chunk(ids.shape[0], head.vocab, head.hidden.shape[-1], chunk_size)
    total, *_ = _FusedLogprobs.apply(chunk, flat.index_select(0, index), ids, rows.hidden,
                                     rows.weight, rows.bias)
    denom = flat.sum() if normalizer is None else normalizer
    if not torch.is_tensor(denom):
        denom = torch.tensor(float(denom), device=total.device)
    return -total / denom.to(total.dtype).clamp_min(1.0)
