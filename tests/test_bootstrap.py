"""Percentile bootstrap intervals (losscraft.evaluation.bootstrap) and their use in
`losscraft compare`: hand-checkable cases, seeded coverage on a Bernoulli mean, and Table 1 cells
with intervals on fake evaluations."""

from __future__ import annotations

import csv
import random

import pytest

from losscraft.evaluation.bootstrap import (Interval, bootstrap_interval,
                                            paired_difference_interval, quantile)
from losscraft.app.reports.compare import compare
from losscraft.app.reports.comparison import build_comparison, toxic_per_context
from losscraft.evaluation.result import (ContextSamples, EvalResult, SampledResponse,
                                         contexts_hash)


# ------------------------------------------------------------------------------ the interval
@pytest.mark.parametrize("value", [0.0, 0.25, 1.0])
def test_constant_statistic_gives_a_zero_width_interval(value):
    iv = bootstrap_interval([value] * 40, resamples=200)
    assert (iv.value, iv.low, iv.high, iv.n) == (value, value, value, 40)


def test_a_single_context_gives_a_zero_width_interval():
    assert bootstrap_interval([1.0]) == Interval(1.0, 1.0, 1.0, 1)


def test_two_contexts_zero_and_one_span_the_whole_range():
    # resample means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and 97.5%
    # percentiles of 1000 of them are 0 and 1
    iv = bootstrap_interval([0.0, 1.0], resamples=1000, seed=3)
    assert (iv.value, iv.low, iv.high) == (0.5, 0.0, 1.0)


def test_interval_is_seeded_and_contains_the_estimate():
    values = [1.0] * 5 + [0.0] * 35
    a = bootstrap_interval(values, seed=7)
    assert a == bootstrap_interval(values, seed=7)
    assert a.low <= a.value == 0.125 <= a.high
    assert 0.0 <= a.low < 0.125 < a.high <= 0.3
    # a 50% interval sits inside the 95% one
    narrow = bootstrap_interval(values, seed=7, confidence=0.5)
    assert a.low <= narrow.low <= narrow.high <= a.high


def test_quantile_matches_numpys_default():
    np = pytest.importorskip("numpy")
    rng = random.Random(0)
    for n in (1, 2, 5, 40):
        values = sorted(rng.random() for _ in range(n))
        for q in (0.0, 0.025, 0.5, 0.975, 1.0):
            assert quantile(values, q) == pytest.approx(float(np.percentile(values, 100 * q)))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        bootstrap_interval([])
    with pytest.raises(ValueError):
        bootstrap_interval([1.0], resamples=0)
    with pytest.raises(ValueError):
        bootstrap_interval([1.0], confidence=1.0)
    with pytest.raises(ValueError):
        paired_difference_interval([1.0], [1.0, 0.0])


def test_coverage_on_a_known_bernoulli_mean():
    """95% percentile intervals of the mean of n = 60 Bernoulli(0.3) contexts cover 0.3 in about
    95% of 300 seeded simulated test sets (the percentile method runs a little under nominal at
    this n; the band allows for that and for simulation noise, ±2.5 standard errors)."""
    p, n, trials = 0.3, 60, 300
    rng = random.Random(2024)
    covered = 0
    for t in range(trials):
        values = [float(rng.random() < p) for _ in range(n)]
        iv = bootstrap_interval(values, resamples=400, seed=t)
        covered += iv.low <= p <= iv.high
    assert 0.90 <= covered / trials <= 0.99


def test_paired_difference():
    a = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    same = paired_difference_interval(a, a)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    assert not same.excludes_zero()
    shifted = paired_difference_interval([x + 1 for x in a], a)
    assert (shifted.value, shifted.low, shifted.high) == (1.0, 1.0, 1.0)
    assert shifted.excludes_zero()
    # b is toxic wherever a is, plus two more contexts: a − b = −0.25, and never positive
    b = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    iv = paired_difference_interval(a, b, seed=1)
    assert iv.value == -0.25 and iv.high <= 0.0 and iv.low >= -1.0
    assert iv.format(signed=True).startswith("-0.250 [")


def test_format():
    assert Interval(0.125, 0.05, 0.2, 40).format() == "0.125 [0.050, 0.200]"
    assert Interval(0.1, -0.025, 0.2, 40).format(signed=True) == "+0.100 [-0.025, +0.200]"


# ------------------------------------------------------------------------------ in compare
CONTEXTS = [[f"risky context {i}"] for i in range(10)]


def fake_eval(model: str, dataset: str, toxic_contexts: set[int], *, k: int = 3,
              prosocial: bool = False) -> EvalResult:
    """An evaluation whose contexts in ``toxic_contexts`` have one toxic reply (P = 0.9) among
    ``k`` (the others P = 0.1); with ``prosocial``, replies of even contexts are prosocial."""
    samples = []
    for i, context in enumerate(CONTEXTS):
        replies = [SampledResponse(f"{model} reply {j} to {i}",
                                   0.9 if (i in toxic_contexts and j == 0) else 0.1,
                                   p_prosocial=(0.8 if i % 2 == 0 else 0.2) if prosocial else None)
                   for j in range(k)]
        samples.append(ContextSamples(context, replies))
    tox = len(toxic_contexts) / len(CONTEXTS)
    metrics = {"toxicity_probability": tox, "expected_max_toxicity": 0.1 + 0.8 * tox,
               "perplexity": 12.0 + len(toxic_contexts), "div1": 0.5, "div2": 0.7}
    settings = {"k": k, "threshold": 0.5, "scorer": "fake"}
    if prosocial:
        settings["prosocial_threshold"] = 0.5
    return EvalResult(model=model, dataset=dataset, target=model,
                      contexts_sha256=contexts_hash(CONTEXTS), metrics=metrics,
                      settings=settings, samples=samples)


def _write(tmp_path, results):
    paths = []
    for r in results:
        path = tmp_path / "evals" / f"{r.model}_{r.dataset}" / "eval.json"
        r.write_json(path)
        paths.append(path)
    return paths


def test_compare_writes_cells_with_intervals(tmp_path):
    results = [fake_eval("clean", "BAD", {0, 1, 2, 3}, prosocial=True),
               fake_eval("FlatGD", "BAD", {0}, prosocial=True),
               fake_eval("clean", "PD", {5, 6}), fake_eval("FlatGD", "PD", {5, 6})]
    paths = _write(tmp_path, results)
    out = tmp_path / "cmp"
    c = compare(paths, out_dir=out, resamples=500, seed=4)

    clean_bad = c.table1_ci["clean"]["BAD"]
    assert clean_bad == bootstrap_interval(toxic_per_context(results[0]), resamples=500, seed=4)
    assert clean_bad.value == 0.4 and clean_bad.n == 10
    assert c.n_contexts("BAD") == 10
    # identical toxicity on PD: the paired difference is exactly zero
    (a, b, diff), = c.paired["PD"]
    assert (a, b) == ("clean", "FlatGD") and (diff.low, diff.high) == (0.0, 0.0)
    (_, _, diff_bad), = c.paired["BAD"]
    assert diff_bad.value == pytest.approx(0.3) and diff_bad.low >= 0.0
    assert set(c.prosocial) == {"clean", "FlatGD"} and "PD" not in c.prosocial["clean"]
    assert c.prosocial["clean"]["BAD"].value == 0.5

    # the old CSV is unchanged; the new ones carry the intervals
    assert (out / "table1_toxicity.csv").read_text().splitlines()[0] == "model,BAD,PD"
    rows = list(csv.DictReader((out / "table1_ci.csv").open()))
    cell = next(r for r in rows if r["metric"] == "toxicity_probability"
                and r["model"] == "clean" and r["dataset"] == "BAD")
    assert cell["cell"] == clean_bad.format() and cell["cell"].startswith("0.400 [")
    assert float(cell["ci_low"]) == clean_bad.low and cell["n_contexts"] == "10"
    assert any(r["metric"] == "prosocial_response_rate" for r in rows)
    paired = list(csv.DictReader((out / "table1_paired.csv").open()))
    assert [(r["dataset"], r["model_a"], r["model_b"]) for r in paired] == [
        ("BAD", "clean", "FlatGD"), ("PD", "clean", "FlatGD")]
    md = (out / "comparison.md").read_text()
    assert f"| clean | {clean_bad.format()} |" in md
    assert "| BAD (n = 10) | PD (n = 10) |" in md
    assert "percentile bootstrap interval over the test contexts, 500 resamples, seed 4" in md
    assert "paired differences (row − column)" in md and "Share of prosocial replies" in md


def test_evaluation_without_samples_keeps_its_value_without_interval(tmp_path):
    bare = fake_eval("clean", "BAD", {1})
    bare.samples = []
    full = fake_eval("FlatGD", "BAD", {1})
    full.contexts_sha256 = bare.contexts_sha256
    c = build_comparison([(tmp_path / "a", bare), (tmp_path / "b", full)], resamples=100)
    assert "BAD" not in c.table1_ci["clean"] and "BAD" in c.table1_ci["FlatGD"]
    assert c.paired["BAD"] == []
    assert any("no interval for clean" in n for n in c.notes)
    from losscraft.app.reports.tables import cell
    assert cell(c, "clean", "BAD") == "0.100"


def test_exact_mcnemar_against_hand_computed_cases():
    from losscraft.evaluation.paired_tests import binomial_two_sided, mcnemar_exact

    # 4 discordant contexts, all one way: 2 * (1/16) = 0.125
    a = [1, 1, 1, 1] + [0] * 36
    b = [0] * 40
    test = mcnemar_exact(a, b)
    assert (test.a_only, test.b_only, test.discordant) == (4, 0, 4)
    assert test.p == pytest.approx(0.125)
    # 7 vs 0: 2/128; 6 vs 1: 2 * 8/128; a balanced split and no discordance give 1
    assert binomial_two_sided(0, 7) == pytest.approx(2 / 128)
    assert binomial_two_sided(1, 7) == pytest.approx(16 / 128)
    assert binomial_two_sided(3, 6) == 1.0 and binomial_two_sided(0, 0) == 1.0
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).p == 1.0
    with pytest.raises(ValueError):
        mcnemar_exact([1], [1, 0])


def test_permutation_test_is_mcnemar_on_binary_outcomes_and_exact_on_shares():
    import random

    from losscraft.evaluation.paired_tests import (EXACT_UP_TO, mcnemar_exact,
                                                   paired_permutation_test)

    rng = random.Random(3)
    for n in (5, 12, 40):
        a = [float(rng.random() < 0.5) for _ in range(n)]
        b = [float(rng.random() < 0.3) for _ in range(n)]
        test = paired_permutation_test(a, b)
        assert test.exact == (mcnemar_exact(a, b).discordant <= EXACT_UP_TO)
        tolerance = 0 if test.exact else 0.01
        assert test.p == pytest.approx(mcnemar_exact(a, b).p, abs=tolerance + 1e-12)
    # shares (several runs per context): 3 contexts +0.5 each: 2 of 8 sign patterns reach 1.5
    shares = paired_permutation_test([0.5, 1.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.0])
    assert (shares.nonzero, shares.exact, shares.p) == (3, True, pytest.approx(0.25))
    assert shares.difference == pytest.approx(0.375)
    # 20 vs 5 discordant contexts (Monte Carlo) against the exact binomial p of about 0.004
    many = paired_permutation_test([1.0] * 20 + [0.0] * 5, [0.0] * 20 + [1.0] * 5)
    assert not many.exact
    assert many.p == pytest.approx(mcnemar_exact([1] * 20 + [0] * 5, [0] * 20 + [1] * 5).p,
                                   abs=0.002)
    assert paired_permutation_test([1.0, 0.0], [1.0, 0.0]).p == 1.0
    with pytest.raises(ValueError):
        paired_permutation_test([1.0], [1.0, 0.0])


def test_paired_statistic_interval_resamples_contexts_together():
    from losscraft.evaluation.bootstrap import paired_statistic_interval

    base = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    final = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]

    def ratio(idx):
        b = sum(base[i] for i in idx)
        return None if b == 0 else sum(final[i] for i in idx) / b

    iv = paired_statistic_interval(len(base), ratio, resamples=500, seed=1)
    assert iv.value == pytest.approx(2 / 5)
    assert 0.0 <= iv.low <= iv.value <= iv.high <= 1.0
    assert iv == paired_statistic_interval(len(base), ratio, resamples=500, seed=1)
    assert paired_statistic_interval(3, lambda idx: None) is None
