"""Exact paired tests for "model A is more often unsafe than model B on the same contexts".

Each test context gives both models a binary outcome (e.g. at least one of its k replies flagged
unsafe). Only the *discordant* contexts — unsafe under one model and not the other — carry
evidence; `mcnemar_exact` is the exact (binomial) McNemar test on them: under "no difference"
each discordant context is equally likely to fall either way, so the two-sided p-value is the
probability of a split at least as lopsided under Binomial(n_discordant, 1/2). With 4 discordant
contexts all one way, p = 0.125: no ordering can be claimed from them.

With several runs per model (training and generation seeds) each context's outcome is a share in
[0, 1]; `paired_permutation_test` is the sign-flip test on the per-context differences (exact
when few contexts differ, Monte Carlo otherwise). On binary outcomes it is the exact McNemar test.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
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


#: `paired_permutation_test` enumerates every sign pattern up to this many non-zero differences
EXACT_UP_TO = 16


@dataclass(frozen=True)
class Permutation:
    """``difference``: mean over contexts of a − b; ``nonzero``: contexts where they differ;
    ``p``: two-sided p-value; ``exact``: whether every sign pattern was enumerated."""

    difference: float
    nonzero: int
    p: float
    exact: bool


def paired_permutation_test(a: Sequence[float], b: Sequence[float], *, resamples: int = 20000,
                            seed: int = 0) -> Permutation:
    """Two-sided sign-flip permutation test of "mean(a − b) = 0" for paired per-context values.

    Under "no difference" each context's difference is as likely to have either sign; the p-value
    is the share of sign patterns whose |sum| reaches the observed |sum| (all ``2**nonzero``
    patterns up to `EXACT_UP_TO` non-zero differences, else ``resamples`` random ones, counted
    with the observed one so that p > 0)."""
    if len(a) != len(b):
        raise ValueError(f"paired outcomes need the same contexts: {len(a)} vs {len(b)}")
    if not a:
        raise ValueError("paired outcomes need at least one context")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    nonzero = [d for d in diffs if abs(d) > 1e-12]
    observed = abs(sum(nonzero)) - 1e-9
    mean = sum(diffs) / len(diffs)
    if not nonzero:
        return Permutation(mean, 0, 1.0, True)
    if len(nonzero) <= EXACT_UP_TO:
        hits = sum(abs(sum(s * d for s, d in zip(signs, nonzero))) >= observed
                   for signs in product((1, -1), repeat=len(nonzero)))
        return Permutation(mean, len(nonzero), hits / 2 ** len(nonzero), True)
    rng = random.Random(seed)
    hits = sum(abs(sum(d if rng.random() < 0.5 else -d for d in nonzero)) >= observed
               for _ in range(resamples))
    return Permutation(mean, len(nonzero), (hits + 1) / (resamples + 1), False)
