"""Exact paired tests for "model A is more often unsafe than model B on the same contexts".

Each test context gives both models a binary outcome (e.g. at least one of its k replies flagged
unsafe). Only the *discordant* contexts — unsafe under one model and not the other — carry
evidence; `mcnemar_exact` is the exact (binomial) McNemar test on them: under "no difference"
each discordant context is equally likely to fall either way, so the two-sided p-value is the
probability of a split at least as lopsided under Binomial(n_discordant, 1/2). With 4 discordant
contexts all one way, p = 0.125: no ordering can be claimed from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb


@dataclass(frozen=True)
class McNemar:
    """``a_only``: contexts where only A's outcome is positive; ``b_only``: only B's; ``p``: the
    exact two-sided p-value."""

    a_only: int
    b_only: int
    p: float

    @property
    def discordant(self) -> int:
        return self.a_only + self.b_only


def binomial_two_sided(k: int, n: int) -> float:
    """Two-sided exact p-value of ``k`` successes in ``n`` fair coin flips: twice the smaller
    tail, capped at 1 (``n = 0`` gives 1)."""
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def mcnemar_exact(a: Sequence[float | bool], b: Sequence[float | bool]) -> McNemar:
    """The exact McNemar test of paired binary outcomes ``a[i]``, ``b[i]`` (truthy = positive)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same contexts: {len(a)} vs {len(b)}")
    a_only = sum(bool(x) and not bool(y) for x, y in zip(a, b))
    b_only = sum(bool(y) and not bool(x) for x, y in zip(a, b))
    return McNemar(a_only, b_only, binomial_two_sided(a_only, a_only + b_only))
