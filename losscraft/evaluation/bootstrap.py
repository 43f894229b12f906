"""Percentile bootstrap intervals over test contexts (for the cells of `losscraft compare`).

A Table 1 cell is a mean over test contexts of a per-context statistic (1 when at least one of the
context's k replies is toxic, else 0). Its uncertainty comes from which contexts were drawn, so the
bootstrap resamples *contexts* with replacement, recomputes the mean on each resample, and reports
the ``(1 − confidence)/2`` and ``(1 + confidence)/2`` percentiles of those means (the percentile
method; linear interpolation between order statistics, as ``numpy.percentile``'s default).
`paired_difference_interval` does the same for the difference of two models evaluated on the same
contexts, drawing the same contexts for both (the paired bootstrap), which is what decides whether
one model is really below another.

Pure Python and seeded: the same inputs and ``seed`` give the same interval on any platform.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

#: defaults used by `losscraft compare`
RESAMPLES = 1000
CONFIDENCE = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap interval ``[low, high]``; ``n`` contexts."""

    value: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (for differences)."""
        return self.low > 0.0 or self.high < 0.0

    def format(self, digits: int = 3, *, signed: bool = False) -> str:
        """``"0.125 [0.050, 0.200]"`` (``signed``: ``"+0.125 [+0.050, +0.200]"``)."""
        spec = f"{'+' if signed else ''}.{digits}f"
        return f"{self.value:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ascending ``sorted_values`` by linear interpolation between order
    statistics (numpy's default, "type 7")."""
    if not sorted_values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    position = q * (len(sorted_values) - 1)
    below = int(position)
    above = min(below + 1, len(sorted_values) - 1)
    fraction = position - below
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * fraction


def _check(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _interval(means: list[float], value: float, n: int, confidence: float) -> Interval:
    means.sort()
    tail = (1.0 - confidence) / 2.0
    return Interval(value, quantile(means, tail), quantile(means, 1.0 - tail), n)


def bootstrap_interval(per_context: Sequence[float], *, resamples: int = RESAMPLES,
                       confidence: float = CONFIDENCE, seed: int = SEED) -> Interval:
    """Percentile bootstrap interval of the mean of ``per_context`` (one value per test context),
    resampling contexts with replacement ``resamples`` times. A constant statistic gives a
    zero-width interval; so does a single context."""
    values = [float(v) for v in per_context]
    if not values:
        raise ValueError("no contexts to resample")
    _check(resamples, confidence)
    n = len(values)
    rng = random.Random(seed)
    means = [sum(rng.choices(values, k=n)) / n for _ in range(resamples)]
    return _interval(means, sum(values) / n, n, confidence)


def paired_difference_interval(a: Sequence[float], b: Sequence[float], *,
                               resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                               seed: int = SEED) -> Interval:
    """Percentile bootstrap interval of ``mean(a) − mean(b)`` where ``a[i]`` and ``b[i]`` belong
    to the same context ``i`` (two models on the same test set): each resample draws the same
    contexts for both."""
    if len(a) != len(b):
        raise ValueError(f"paired statistics need the same contexts: {len(a)} vs {len(b)}")
    return bootstrap_interval([float(x) - float(y) for x, y in zip(a, b)], resamples=resamples,
                              confidence=confidence, seed=seed)


def paired_statistic_interval(n: int, statistic, *, resamples: int = RESAMPLES,
                              confidence: float = CONFIDENCE, seed: int = SEED) -> Interval | None:
    """Percentile bootstrap interval of ``statistic(indices)`` — any number computed from a list
    of context indices, e.g. the ratio of a final model's unsafe share to the base model's on
    those contexts — resampling the ``n`` contexts with replacement (the same draw for everything
    the statistic compares: a paired bootstrap). Resamples where the statistic is undefined
    (``None``, e.g. a ratio over a base of 0) are left out; ``None`` when more than half are."""
    _check(resamples, confidence)
    if n < 1:
        raise ValueError("no contexts to resample")
    value = statistic(list(range(n)))
    if value is None:
        return None
    rng = random.Random(seed)
    values = [v for v in (statistic(rng.choices(range(n), k=n)) for _ in range(resamples))
              if v is not None]
    if len(values) * 2 < resamples:
        return None
    return _interval(values, value, n, confidence)
