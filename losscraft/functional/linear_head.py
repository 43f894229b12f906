"""`LinearHead`: a model's output layer together with its input, the operand of fused loss heads.

A causal LM's logits are ``hidden @ weight.T (+ bias)``. Fused losses (`fused_js`, `fused_ce`)
take the last hidden states and the ``lm_head`` weight instead of the logits and compute the
logits a chunk of rows at a time, so no ``(tokens, V)`` tensor ever exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from losscraft.functional import onednn_linear

#: About this many ``(row, word)`` elements per chunk (≈ 16 MiB per float32 chunk tensor; a
#: fused head keeps about eight such tensors alive at once)...
DEFAULT_CHUNK_ELEMENTS = 1 << 22
#: ...but at least this many rows: ``∂W += dzᵀ @ hidden`` reads and writes all of ``∂W`` once
#: per chunk, so chunks of a few dozen rows make the weight gradient memory-bound (measured on
#: CPU at V = 49,152: 42-row chunks 1.3× slower than 128-row ones; 128, 256 and 512 equal).
MIN_CHUNK_ROWS = 128


@dataclass(frozen=True)
class LinearHead:
    """The input and parameters of a linear output layer: ``logits = hidden @ weight.T + bias``.

    Attributes:
        hidden: ``(..., H)`` last hidden states (e.g. ``(B, T, H)`` or ``(n, H)`` rows).
        weight: ``(V, H)`` output weight (``lm_head.weight``; tied embeddings are fine).
        bias: ``(V,)`` or ``None``.
    """

    hidden: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None = None

    def __post_init__(self):
        if self.weight.dim() != 2:
            raise ValueError(f"weight must be (V, H), got shape {tuple(self.weight.shape)}")
        if self.hidden.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"hidden size {self.hidden.shape[-1]} does not match weight "
                             f"{tuple(self.weight.shape)} (expected (V, {self.hidden.shape[-1]}))")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise ValueError(f"bias must be ({self.weight.shape[0]},), got "
                             f"{tuple(self.bias.shape)}")

    @property
    def vocab(self) -> int:
        """Vocabulary size ``V``."""
        return self.weight.shape[0]

    @property
    def positions(self) -> torch.Size:
        """The shape of ``hidden`` without its last dimension (what a mask must match)."""
        return self.hidden.shape[:-1]

    def logits(self) -> torch.Tensor:
        """The full ``(..., V)`` logits (materialised: for references and small inputs)."""
        return linear_logits(self.hidden, self.weight, self.bias)

    def rows(self, index: torch.Tensor | None = None) -> "LinearHead":
        """The head over flattened ``(n, H)`` rows, keeping the rows in ``index`` if given."""
        flat = self.hidden.reshape(-1, self.hidden.shape[-1])
        if index is not None:
            flat = flat.index_select(0, index)
        return LinearHead(flat, self.weight, self.bias)


def matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the head's matmul runs in: the promotion of the two operands."""
    return torch.promote_types(hidden.dtype, weight.dtype)


def linear_logits(hidden: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None) -> torch.Tensor:
    """``hidden @ weight.T + bias`` in the promoted dtype of ``hidden`` and ``weight`` (through
    oneDNN where no graph is wanted, see `losscraft.functional.onednn_linear`)."""
    dtype = matmul_dtype(hidden, weight)
    return onednn_linear.linear(hidden.to(dtype), weight.to(dtype),
                                None if bias is None else bias.to(dtype))


#: `rows_per_chunk`: a whole input of at most this many ``(V, H)`` weights' worth of logits is one
#: chunk (the logits formed once, as unfused): no chunk loop where the logits are small.
UNFUSED_BELOW = 1.0
#: `rows_per_chunk`: inputs of at least this many default chunks get chunks twice as long
#: (measured at V = 49,152: 256-row matmuls ≈ 1.2× faster than 128-row ones, and there the
#: extra ``(chunk, V)`` buffers are small next to what any unfused head would hold).
LONG_INPUT_CHUNKS = 4


def default_chunk(vocab: int) -> int:
    """Rows per chunk for a vocabulary of ``vocab`` words: about `DEFAULT_CHUNK_ELEMENTS`
    elements, at least `MIN_CHUNK_ROWS` rows."""
    return max(MIN_CHUNK_ROWS, DEFAULT_CHUNK_ELEMENTS // max(vocab, 1))


def rows_per_chunk(rows: int, vocab: int, hidden: int, chunk_size: int | None = None, *,
                   unfused_below: float = UNFUSED_BELOW) -> int:
    """The chunk of a fused head over ``rows`` rows: ``chunk_size`` if given; all rows when the
    ``(rows, V)`` logits are at most ``unfused_below`` ``(V, H)`` weights, else chunks of that
    size (≥ `MIN_CHUNK_ROWS` rows); with ``unfused_below = 0``, `default_chunk`, doubled for
    inputs of `LONG_INPUT_CHUNKS` default chunks or more."""
    if chunk_size is not None:
        return chunk_size
    if rows <= unfused_below * hidden:
        return max(rows, 1)
    if unfused_below > 0:  # chunks as large as that one block: few ∂W read-modify-writes
        return max(MIN_CHUNK_ROWS, int(unfused_below * hidden))
    base = default_chunk(vocab)
    return 2 * base if rows >= LONG_INPUT_CHUNKS * base else base


def check_chunk_size(chunk_size: int | None) -> None:
    """Raise `ValueError` for a chunk size that is not a positive integer (``None`` is fine)."""
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def head_grads(dz: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
               bias: torch.Tensor | None, need: tuple[bool, bool, bool]):
    """Gradients of ``Σ dz ⊙ (hidden @ weight.T + bias)`` for one chunk of rows:
    ``(∂hidden, ∂weight, ∂bias)`` (``None`` where ``need`` is false). ``∂weight`` and ``∂bias``
    are float32 (or float64) partial sums to accumulate over chunks."""
    dtype = matmul_dtype(hidden, weight)
    acc = torch.promote_types(dtype, torch.float32)
    d = dz.to(dtype)
    gh = (d @ weight.to(dtype)).to(hidden.dtype) if need[0] else None
    gw = (d.t() @ hidden.to(dtype)).to(acc) if need[1] else None
    gb = dz.to(acc).sum(0) if need[2] and bias is not None else None
    return gh, gw, gb


def accumulate_head_grads(dz: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor | None, gh_out: torch.Tensor | None,
                          gw_acc: torch.Tensor | None, gb_acc: torch.Tensor | None) -> None:
    """`head_grads` of one chunk written straight into preallocated buffers: ``gh_out`` (the
    chunk's rows of ``∂hidden``) ``= dz @ weight``, ``gw_acc += dzᵀ @ hidden``, ``gb_acc +=
    Σ dz`` (each skipped when ``None``). Where the dtypes agree the matmuls write in place, so
    no ``(V, H)`` or ``(chunk, H)`` temporary is formed."""
    dtype = matmul_dtype(hidden, weight)
    same = dz.dtype == dtype == weight.dtype
    if gh_out is not None:
        if same and gh_out.dtype == dtype and gh_out.is_contiguous():
            torch.mm(dz, weight, out=gh_out)
        else:
            gh_out.copy_(dz.to(dtype) @ weight.to(dtype))
    if gw_acc is not None:
        if same and gw_acc.dtype == dtype == hidden.dtype:
            gw_acc.addmm_(dz.t(), hidden)
        else:
            gw_acc += (dz.to(dtype).t() @ hidden.to(dtype)).to(gw_acc.dtype)
    if gb_acc is not None and bias is not None:
        gb_acc += dz.to(gb_acc.dtype).sum(0)


def hand_over(pre: list | None, need, g_out: torch.Tensor) -> list | None:
    """The gradients a fused head formed in its forward, scaled by the incoming gradient in
    place and returned for autograd to take without a copy — the first backward's ``∂W``
    buffer becomes ``W.grad`` itself (or is added into an existing one). ``None`` when they
    cannot be used (already handed over, or one is missing): the caller recomputes."""
    if pre is None or any(nd and g is None for nd, g in zip(need, pre)):
        return None
    out = []
    for nd, g in zip(need, pre):
        out.append(g.mul_(g_out.to(g.dtype)) if nd and g is not None else None)
    return out
