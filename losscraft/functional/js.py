"""Chunked Jensen–Shannon divergence between categorical distributions given as logits.

``JS(P, Q) = ½·KL(P‖M) + ½·KL(Q‖M)`` with ``M = ½(P + Q)``. With natural logs it lies in
``[0, ln 2]``; in base 2 in ``[0, 1]``.

Memory: a naive implementation keeps several ``(tokens, V)`` float32 tensors (probabilities,
log-probabilities, the mixture) alive for backward. `js_divergence_rows` is a custom autograd
function that saves only its input logits and recomputes everything chunk by chunk — in the
forward and again in the backward — so the extra memory is a few ``(chunk_size, V)`` float32
tensors at a time. Its backward is written in differentiable torch ops, so double backward
(``create_graph=True``) and nested ``torch.func`` transforms (``grad`` of ``grad``, ``vjp`` of
``grad``) work, as the exact gradient-norm penalty needs.
"""

from __future__ import annotations

import math

import torch

#: Default chunk: about this many ``(position, word)`` elements per chunk (≈ 32 MiB in float32).
DEFAULT_CHUNK_ELEMENTS = 1 << 23


def _default_chunk(vocab: int) -> int:
    return max(1, DEFAULT_CHUNK_ELEMENTS // max(vocab, 1))


#: Floor for log-probabilities, so that a word with probability 0 (a ``-inf`` logit) contributes
#: ``0 · finite = 0`` instead of ``0 · (-inf) = nan``.
_LOG_FLOOR = -1e30


def _log_softmax(logits: torch.Tensor) -> torch.Tensor:
    # At least float32 (bf16/fp16 logits are upcast; float64 stays float64).
    dtype = torch.promote_types(logits.dtype, torch.float32)
    return torch.log_softmax(logits.to(dtype), dim=-1).clamp_min(_LOG_FLOOR)


def _chunk_terms(logits_p: torch.Tensor, refs: tuple[torch.Tensor, ...]):
    """Log-probabilities of P, of each Q_k and of each mixture M_k (at least float32)."""
    log_p = _log_softmax(logits_p)
    out = []
    for q in refs:
        log_q = _log_softmax(q)
        log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
        out.append((log_q, log_m))
    return log_p, out


def _js_from_logs(log_p, log_q, log_m) -> torch.Tensor:
    # ½ Σ p (log p − log m) + ½ Σ q (log q − log m)
    kl_p = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_q = (log_q.exp() * (log_q - log_m)).sum(-1)
    return 0.5 * (kl_p + kl_q)


class _JSRows(torch.autograd.Function):
    """``(n, V)`` policy logits and K ``(n, V)`` reference logits → ``(n, K)`` JS in nats."""

    @staticmethod
    def forward(chunk_size: int, logits_p: torch.Tensor, *refs: torch.Tensor) -> torch.Tensor:
        rows = []
        for s in range(0, logits_p.shape[0], chunk_size):
            log_p, terms = _chunk_terms(logits_p[s:s + chunk_size],
                                        tuple(q[s:s + chunk_size] for q in refs))
            rows.append(torch.stack([_js_from_logs(log_p, lq, lm) for lq, lm in terms], -1))
        if not rows:
            return logits_p.new_zeros((0, len(refs)),
                                      dtype=torch.promote_types(logits_p.dtype, torch.float32))
        return torch.cat(rows, 0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        chunk_size, logits_p, *refs = inputs
        ctx.chunk_size = chunk_size
        ctx.save_for_backward(logits_p, *refs)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        # ∂JS/∂p_i = ½(log p_i − log m_i) =: u_i; through softmax: ∂/∂a_j = p_j (u_j − Σ_i p_i u_i).
        logits_p, *refs = ctx.saved_tensors
        need_p = ctx.needs_input_grad[1]
        need_q = ctx.needs_input_grad[2:]
        cs = ctx.chunk_size
        if not torch.is_grad_enabled():  # plain backward: write each chunk into its place
            return (None, *_backward_into(logits_p, refs, grad_out, cs, need_p, need_q))
        grads_p: list[torch.Tensor] = []
        grads_q: list[list[torch.Tensor]] = [[] for _ in refs]
        for s in range(0, logits_p.shape[0], cs):
            g = grad_out[s:s + cs]
            log_p, terms = _chunk_terms(logits_p[s:s + cs], tuple(q[s:s + cs] for q in refs))
            p = log_p.exp()
            acc_p = None
            for k, (log_q, log_m) in enumerate(terms):
                gk = g[:, k:k + 1]
                if need_p:
                    u = 0.5 * (log_p - log_m)
                    part = p * (u - (p * u).sum(-1, keepdim=True)) * gk
                    acc_p = part if acc_p is None else acc_p + part
                if need_q[k]:
                    q = log_q.exp()
                    v = 0.5 * (log_q - log_m)
                    grads_q[k].append(q * (v - (q * v).sum(-1, keepdim=True)) * gk)
            if need_p:
                grads_p.append(acc_p)
        gp = torch.cat(grads_p, 0).to(logits_p.dtype) if need_p and grads_p else None
        gqs = [torch.cat(gq, 0).to(q.dtype) if need_q[k] and gq else None
               for k, (gq, q) in enumerate(zip(grads_q, refs))]
        return (None, gp, *gqs)


@torch.no_grad()
def _backward_into(logits_p, refs, grad_out, cs, need_p, need_q):
    """`_JSRows.backward` without ``create_graph``: the gradients are preallocated and filled
    chunk by chunk (no list of chunk gradients and no ``torch.cat`` copy of them)."""
    gp = torch.empty_like(logits_p) if need_p else None
    gqs = [torch.empty_like(q) if need_q[k] else None for k, q in enumerate(refs)]
    for s in range(0, logits_p.shape[0], cs):
        g = grad_out[s:s + cs]
        log_p, terms = _chunk_terms(logits_p[s:s + cs], tuple(q[s:s + cs] for q in refs))
        p = log_p.exp() if need_p else None
        acc_p = None
        for k, (log_q, log_m) in enumerate(terms):
            gk = g[:, k:k + 1]
            if need_p:
                u = (log_p - log_m).mul_(0.5)
                part = u.sub_((p * u).sum(-1, keepdim=True)).mul_(p).mul_(gk)
                acc_p = part if acc_p is None else acc_p.add_(part)
            if need_q[k]:
                q = log_q.exp()
                v = (log_q - log_m).mul_(0.5)
                gqs[k][s:s + cs] = v.sub_((q * v).sum(-1, keepdim=True)).mul_(q).mul_(gk)
        if need_p:
            gp[s:s + cs] = acc_p
    return (gp, *gqs)


def js_divergence_rows(logits_p: torch.Tensor, *logits_q: torch.Tensor,
                       chunk_size: int | None = None) -> torch.Tensor:
    """Per-row JS divergence (nats) between ``softmax(logits_p)`` and each ``softmax(logits_q[k])``.

    Args:
        logits_p: ``(n, V)`` logits.
        *logits_q: one or more ``(n, V)`` logits (e.g. expert outputs).
        chunk_size: rows per chunk (default: about `DEFAULT_CHUNK_ELEMENTS` elements per chunk).

    Returns:
        ``(n, K)`` (float32; float64 for float64 inputs), column ``k`` the divergence from
        ``logits_q[k]``. One pass over ``logits_p`` serves all K references (its log-softmax is
        computed once per chunk).
    """
    if not logits_q:
        raise ValueError("js_divergence_rows needs at least one reference logits tensor")
    for q in logits_q:
        if q.shape != logits_p.shape:
            raise ValueError(f"logits shapes differ: {tuple(logits_p.shape)} vs {tuple(q.shape)}"
                             " (experts must share the policy's vocabulary)")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
    cs = chunk_size or _default_chunk(logits_p.shape[-1])
    return _JSRows.apply(cs, logits_p, *logits_q)


def select_positions(mask: torch.Tensor | None, *logits: torch.Tensor):
    """Flatten ``(..., V)`` logits to rows and keep the rows where ``mask`` is non-zero.

    Returns ``(weights, rows...)``: the kept rows' float32 mask values and each logits tensor's
    kept ``(n, V)`` rows. Skipping masked-out positions (context, padding) saves work and means
    whatever they hold (even NaN) cannot leak into the result.
    """
    for x in logits[1:]:
        if x.shape != logits[0].shape:
            raise ValueError(f"logits shapes differ: {tuple(logits[0].shape)} vs "
                             f"{tuple(x.shape)} (experts must share the policy's vocabulary)")
    vocab = logits[0].shape[-1]
    flat = [x.reshape(-1, vocab) for x in logits]
    if mask is None:
        weights = torch.ones(flat[0].shape[0], device=flat[0].device)
        return (weights, *flat)
    if mask.shape != logits[0].shape[:-1]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match logits positions "
                         f"{tuple(logits[0].shape[:-1])}")
    w = mask.reshape(-1).float()
    if bool((w != 0).all()):  # every position kept: views, no (n, V) copies
        return (w, *flat)
    idx = w.nonzero().squeeze(1)
    return (w.index_select(0, idx), *(x.index_select(0, idx) for x in flat))


def masked_mean(values: torch.Tensor, weights: torch.Tensor,
                normalizer: float | torch.Tensor | None) -> torch.Tensor:
    """``Σ w·v / normalizer`` (default ``Σ w``), the denominator clamped to ≥ 1 like `token_nll`."""
    total = (values * weights).sum()
    denom = weights.sum() if normalizer is None else normalizer
    if not torch.is_tensor(denom):
        denom = torch.tensor(float(denom), device=total.device)
    return total / denom.clamp_min(1.0)


def js_divergence(
    logits_p: torch.Tensor,
    logits_q: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    chunk_size: int | None = None,
    log_base: float = math.e,
    normalizer: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Masked mean Jensen–Shannon divergence between two categorical distributions.

    ``Σ_t m_t · JS(softmax(p_t), softmax(q_t)) / Σ_t m_t``, computed in float32 with the mixture
    in log space (``log m = logaddexp(log p, log q) − log 2``) and in chunks of positions.

    Args:
        logits_p: ``(..., V)`` logits (e.g. the policy).
        logits_q: ``(..., V)`` logits (e.g. a frozen expert; may be detached).
        mask: ``logits.shape[:-1]`` weights; positions with weight 0 are skipped entirely.
        chunk_size: positions per chunk (default: about 8M elements per chunk).
        log_base: logarithm base; ``math.e`` gives nats in ``[0, ln 2]``, ``2`` gives ``[0, 1]``.
        normalizer: divide by this instead of ``Σ mask`` (e.g. the step's token count).

    Returns:
        A scalar (float32; float64 for float64 inputs); differentiable (twice) w.r.t. both inputs.
    """
    if log_base <= 0 or log_base == 1:
        raise ValueError(f"log_base must be positive and ≠ 1, got {log_base}")
    weights, rows_p, rows_q = select_positions(mask, logits_p, logits_q)
    js = js_divergence_rows(rows_p, rows_q, chunk_size=chunk_size)[:, 0]
    return masked_mean(js, weights, normalizer) / math.log(log_base)
