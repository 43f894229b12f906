"""Table 1 pooled over runs (losscraft.app.reports.seeds): per-context shares, per-seed ranges,
the paired permutation test, and refusals of runs that cannot be pooled."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from losscraft.errors import DataError
from losscraft.app.reports import seeds
from losscraft.evaluation.paired_tests import mcnemar_exact

from test_bootstrap import CONTEXTS, fake_eval


def run(model: str, train: int, generation: int, toxic: set[int]) -> seeds.Run:
    """``model``'s evaluation from one (training seed, generation seed) with ``toxic`` contexts."""
    return seeds.Run(model, train, generation, fake_eval(model, "BAD (fake)", toxic),
                     Path(f"{model}-{train}-{generation}"))


def test_pooled_cells_are_shares_over_runs_with_seed_ranges(tmp_path):
    n = len(CONTEXTS)
    runs = [run("A", 0, 0, {0, 1, 2}), run("A", 1, 0, {0, 1}),
            run("B", 0, 0, {0}), run("B", 1, 0, {0})]
    pooled = seeds.pool_runs(runs, resamples=200)
    a, b = pooled.cells["BAD (fake)"]["A"], pooled.cells["BAD (fake)"]["B"]
    assert a.per_context[:3] == [1.0, 1.0, 0.5] and a.interval.value == pytest.approx(2.5 / n)
    assert a.spread(0) == (pytest.approx(2 / n), pytest.approx(3 / n))  # training seeds
    assert a.spread(1) == (pytest.approx(2.5 / n), pytest.approx(2.5 / n))
    (first, second, diff, test), = pooled.paired["BAD (fake)"]
    assert (first, second) == ("A", "B") and diff.value == pytest.approx(1.5 / n)
    assert test.exact and test.nonzero == 2 and test.p == pytest.approx(0.5)
    # one run each: the permutation test is the exact McNemar test
    single = seeds.pool_runs([run("A", 0, 0, set(range(7))), run("B", 0, 0, set())])
    assert single.paired["BAD (fake)"][0][3].p == pytest.approx(
        mcnemar_exact([1] * 7 + [0] * (n - 7), [0] * n).p)
    files = seeds.write_pooled(pooled, tmp_path)
    rows = list(csv.DictReader(files[0].open()))
    assert [(r["model"], r["runs"]) for r in rows] == [("A", "2"), ("B", "2")]
    assert "| A − B | +" in files[2].read_text()


def test_runs_that_cannot_be_pooled_are_refused():
    other = fake_eval("B", "BAD (fake)", set())
    other.contexts_sha256 = "0" * 64
    with pytest.raises(DataError, match="different contexts"):
        seeds.pool_runs([run("A", 0, 0, set()), seeds.Run("B", 0, 0, other, Path("b"))])
    with pytest.raises(DataError, match="given twice"):
        seeds.pool_runs([run("A", 0, 0, set()), run("A", 0, 0, {1})])
    empty = fake_eval("A", "BAD (fake)", set())
    empty.samples = []
    with pytest.raises(DataError, match="no samples"):
        seeds.pool_runs([seeds.Run("A", 0, 0, empty, Path("a"))])
