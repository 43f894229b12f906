"""How close the fused JSD head runs to its matrix products, and what that allows against naive.

Both the fused head (`losscraft.functional.fused_js.fused_linear_js`) and the naive one (full
``(T, V)`` logits, `losscraft.bench.reference.naive_js`, autograd) do the same matrix products:
the policy's logits ``h·Wᵀ``, each expert's ``h_k·W_kᵀ``, and the backward's ``∂h = dz·W`` and
``∂W = dzᵀ·h``. The "floor" here is those products alone, each one call over all T rows (no loss
math, no chunks), run as the fused head runs them: the forward logits through
`losscraft.functional.linear_head.linear_logits` (oneDNN on CPU float32, see
`losscraft.functional.onednn_linear`), the backward's two through ``torch.mm`` (MKL). The "MKL
floor" runs all of them through ``@``, as naive does. ``fused / floor`` is what the fused head
spends beyond its products; ``mkl floor / naive`` the best ratio to naive a head whose products
all go through ``@`` could reach on this machine.

Usage (time it alone; one thread, as benchmarks/RESULTS.md):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/matmul_floor.py --tokens 256,512,1024 --experts 1
Prints, per point, the medians of alternating repeats (A, B, C, C, B, A, ...) and the ratios.
"""

from __future__ import annotations

import argparse
import time

import torch

from losscraft.bench.reference import naive_js
from losscraft.functional.fused_js import fused_linear_js
from losscraft.functional.linear_head import LinearHead, linear_logits
from losscraft.runtime.malloc import keep_freed_memory


def _inputs(tokens: int, vocab: int, hidden: int, experts: int):
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(tokens, hidden, generator=gen).requires_grad_()
    w = (torch.randn(vocab, hidden, generator=gen) * 0.05).requires_grad_()
    refs = [LinearHead(torch.randn(tokens, hidden, generator=gen),
                       torch.randn(vocab, hidden, generator=gen) * 0.05) for _ in range(experts)]
    return h, w, refs


def measure(tokens: int, *, vocab: int, hidden: int, experts: int, repeats: int) -> dict:
    """Median seconds of ``naive``, ``fused`` and ``floor`` at one point."""
    h, w, refs = _inputs(tokens, vocab, hidden, experts)
    mask = torch.ones(tokens)

    def naive():
        with torch.no_grad():
            ref_logits = [r.hidden @ r.weight.T for r in refs]
        logits = h @ w.T
        total = sum(naive_js(logits, q) for q in ref_logits)
        ((total * mask).sum() / mask.sum()).backward()

    def fused():
        value, _ = fused_linear_js(LinearHead(h, w), *refs, mask=mask)
        value.backward()

    def floor():
        with torch.no_grad():
            dz = linear_logits(h, w, None)
            for r in refs:
                linear_logits(r.hidden, r.weight, None)
            dz @ w
            dz.T @ h

    def mkl_floor():
        with torch.no_grad():
            dz = h @ w.T
            for r in refs:
                r.hidden @ r.weight.T
            dz @ w
            dz.T @ h

    fns = {"naive": naive, "fused": fused, "floor": floor, "mkl floor": mkl_floor}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():  # warm-up (and the compiled chunk body's first compile)
        fn()
    for i in range(repeats):
        for name in (list(fns) if i % 2 == 0 else list(fns)[::-1]):
            h.grad = w.grad = None
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", default="256,512,1024")
    parser.add_argument("--experts", default="1")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    keep_freed_memory()  # as `losscraft bench` does: freed buffers are reused, not re-faulted
    print(f"V {args.vocab}, H {args.hidden}, fp32, {torch.get_num_threads()} thread(s), "
          f"median of {args.repeats} alternating repeats")
    print("experts  tokens   naive s   fused s   floor s   mkl floor s   mkl floor/naive  "
          "fused/naive  fused/floor")
    for experts in map(int, args.experts.split(",")):
        for tokens in map(int, args.tokens.split(",")):
            m = measure(tokens, vocab=args.vocab, hidden=args.hidden, experts=experts,
                        repeats=args.repeats)
            print(f"{experts:7d}  {tokens:6d}  {m['naive']:8.3f}  {m['fused']:8.3f}  "
                  f"{m['floor']:8.3f}  {m['mkl floor']:12.3f}  "
                  f"{m['mkl floor'] / m['naive']:15.2f}  {m['fused'] / m['naive']:11.2f}  "
                  f"{m['fused'] / m['floor']:11.2f}", flush=True)


if __name__ == "__main__":
    main()
