"""`build_comparison`: several evaluations side by side in the layout of FlatGD's tables — the
numbers (cells, bootstrap intervals, paired tests, trade-off factors); `losscraft.app.reports
.tables` renders them and `losscraft.app.reports.compare` writes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from losscraft.app.reports.eval_report import fmt
from losscraft.app.reports.penalty_report import PenaltySummary, penalty_by_model
from losscraft.errors import DataError
from losscraft.evaluation import bootstrap as B
from losscraft.evaluation.bootstrap import Interval
from losscraft.evaluation.metrics import tradeoff_factor
from losscraft.evaluation.paired_tests import McNemar, mcnemar_exact
from losscraft.evaluation.result import EVAL_FILE, EvalResult

#: settings that make numbers incomparable when they differ inside one test set
COMPARABLE_SETTINGS = ("k", "threshold", "scorer", "reference", "max_new_tokens", "temperature",
                       "top_p", "top_k")
#: trade-off columns: (name, second metric, is a higher value of it better)
TRADEOFFS = (("fluency", "perplexity", False), ("div1", "div1", True), ("div2", "div2", True))


@dataclass
class Comparison:
    """The comparison tables. ``table1[model][dataset]`` = toxicity probability;
    ``table1_ci[model][dataset]`` = its bootstrap `Interval` (absent when the evaluation holds no
    samples); ``paired[dataset]`` = ``(model_a, model_b, Interval of a − b)`` for every pair of
    models in row order; ``exact[dataset][(model_a, model_b)]`` = the exact McNemar test of the
    same pairs on "at least one unsafe reply" per context; ``prosocial[model][dataset]`` =
    `Interval` of the share of prosocial replies (only test sets where every model has
    P(prosocial)); ``bootstrap`` = the resampling settings; ``tradeoffs[dataset][model]`` =
    {metric values and
    ``tau_fluency``/``tau_div1``/``tau_div2``}; ``notes`` lists settings that differ inside a test
    set; ``files`` what was written; ``penalty[model]`` = the gradient-norm penalty's share
    during that model's training (`losscraft.app.reports.penalty_report`)."""

    models: list[str]
    datasets: list[str]
    table1: dict[str, dict[str, float]]
    tradeoffs: dict[str, dict[str, dict[str, float | None]]]
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    table1_ci: dict[str, dict[str, Interval]] = field(default_factory=dict)
    paired: dict[str, list[tuple[str, str, Interval]]] = field(default_factory=dict)
    exact: dict[str, dict[tuple[str, str], McNemar]] = field(default_factory=dict)
    prosocial: dict[str, dict[str, Interval]] = field(default_factory=dict)
    bootstrap: dict[str, float | int] = field(default_factory=dict)
    penalty: dict[str, list[PenaltySummary]] = field(default_factory=dict)

    def n_contexts(self, dataset: str) -> int | None:
        """Test contexts behind the intervals of ``dataset`` (``None`` without intervals)."""
        found = [ci[dataset].n for ci in self.table1_ci.values() if dataset in ci]
        return found[0] if found else None


def find_evaluations(paths: list[Path]) -> list[tuple[Path, EvalResult]]:
    """Every ``eval.json`` named by ``paths``: files as given, directories searched recursively."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            hits = sorted(path.rglob(EVAL_FILE))
            if not hits:
                raise DataError(f"holds no {EVAL_FILE} (run `losscraft eval` on it first)",
                                file=str(path))
            found += hits
        else:
            raise DataError("does not exist", file=str(path))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [(p, EvalResult.read_json(p)) for p in unique]


def toxic_per_context(result: EvalResult) -> list[float] | None:
    """Per test context: 1.0 when at least one of its replies has P(unsafe) above the evaluation's
    threshold, else 0.0 (the mean is Table 1's toxicity probability); ``None`` without samples."""
    if not result.samples or any(not s.responses for s in result.samples):
        return None
    threshold = float(result.settings.get("threshold", 0.5))
    return [float(any(r.p_unsafe > threshold for r in s.responses)) for s in result.samples]


def prosocial_per_context(result: EvalResult) -> list[float] | None:
    """Per test context: the share of its replies with P(prosocial) above the evaluation's
    ``prosocial_threshold`` (the mean over contexts is the share of prosocial replies when every
    context has k replies); ``None`` unless every reply has a P(prosocial)."""
    if (not result.samples or any(not s.responses for s in result.samples)
            or any(r.p_prosocial is None for s in result.samples for r in s.responses)):
        return None
    threshold = float(result.settings.get("prosocial_threshold", 0.5))
    return [sum(r.p_prosocial > threshold for r in s.responses) / len(s.responses)
            for s in result.samples]


def check_same_contexts(dataset: str, members: list[tuple[Path, EvalResult]]) -> None:
    """Raise `DataError` naming the file when an evaluation of ``dataset`` in ``members``
    sampled other contexts than the first (by ``contexts_sha256``)."""
    first_path, first = members[0]
    for path, result in members[1:]:
        if result.contexts_sha256 != first.contexts_sha256:
            raise DataError(f"test set '{dataset}' has different contexts here than in "
                            f"{first_path} (SHA-256 {result.contexts_sha256[:12]}… vs "
                            f"{first.contexts_sha256[:12]}…)", file=str(path),
                            field="contexts_sha256")


def build_comparison(evaluations: list[tuple[Path, EvalResult]], *, w: float = 0.5,
                     resamples: int = B.RESAMPLES, confidence: float = B.CONFIDENCE,
                     seed: int = B.SEED) -> Comparison:
    """Check the evaluations are comparable and compute Table 1 (with bootstrap intervals over
    the test contexts: ``resamples``, ``confidence``, ``seed``), the paired differences, and the
    trade-off tables."""
    by_key: dict[tuple[str, str], Path] = {}
    groups: dict[str, list[tuple[Path, EvalResult]]] = {}
    for path, result in evaluations:
        key = (result.model, result.dataset)
        if key in by_key:
            raise DataError(f"model '{result.model}' on '{result.dataset}' is also in "
                            f"{by_key[key]}; give one of them another name (losscraft eval "
                            "--label)", file=str(path))
        by_key[key] = path
        groups.setdefault(result.dataset, []).append((path, result))
    notes = []
    for dataset, members in groups.items():
        check_same_contexts(dataset, members)
        for name in COMPARABLE_SETTINGS:
            values = {fmt(r.settings.get(name)) for _, r in members}
            if len(values) > 1:
                notes.append(f"{dataset}: setting '{name}' differs between models "
                             f"({', '.join(sorted(values))})")
    models = list(dict.fromkeys(r.model for _, r in evaluations))
    datasets = list(groups)
    table1 = {m: {} for m in models}
    for _, r in evaluations:
        table1[r.model][r.dataset] = r.metrics["toxicity_probability"]
    tradeoffs = {d: _tradeoffs([r for _, r in groups[d]], w, notes) for d in datasets}
    comparison = Comparison(models, datasets, table1, tradeoffs, notes,
                            bootstrap={"resamples": resamples, "confidence": confidence,
                                       "seed": seed})
    _intervals(comparison, groups, resamples=resamples, confidence=confidence, seed=seed)
    comparison.penalty = penalty_by_model(evaluations)
    return comparison


def _intervals(c: Comparison, groups: dict[str, list[tuple[Path, EvalResult]]], *,
               resamples: int, confidence: float, seed: int) -> None:
    """Fill ``c.table1_ci``, ``c.paired`` and ``c.prosocial`` (same seed for every cell, so the
    models of a test set are resampled on the same contexts)."""
    opts = dict(resamples=resamples, confidence=confidence, seed=seed)
    c.table1_ci = {m: {} for m in c.models}
    c.prosocial = {m: {} for m in c.models}
    for dataset in c.datasets:
        toxic = {r.model: toxic_per_context(r) for _, r in groups[dataset]}
        missing = [m for m, v in toxic.items() if v is None]
        if missing:
            c.notes.append(f"{dataset}: no interval for {', '.join(missing)} (the evaluation "
                           "holds no samples)")
        for model, values in toxic.items():
            if values is not None:
                c.table1_ci[model][dataset] = B.bootstrap_interval(values, **opts)
        ordered = [m for m in c.models if toxic.get(m) is not None]
        c.paired[dataset] = [(a, b, B.paired_difference_interval(toxic[a], toxic[b], **opts))
                             for i, a in enumerate(ordered) for b in ordered[i + 1:]]
        c.exact[dataset] = {(a, b): mcnemar_exact(toxic[a], toxic[b])
                            for a, b, _ in c.paired[dataset]}
        prosocial = {r.model: prosocial_per_context(r) for _, r in groups[dataset]}
        if all(v is not None for v in prosocial.values()):
            for model, values in prosocial.items():
                c.prosocial[model][dataset] = B.bootstrap_interval(values, **opts)
    c.prosocial = {m: v for m, v in c.prosocial.items() if v}


def _tradeoffs(results: list[EvalResult], w: float, notes: list[str]) -> dict[str, dict]:
    rows = {r.model: {"toxicity_probability": r.metrics["toxicity_probability"],
                      "perplexity": r.metrics.get("perplexity"), "div1": r.metrics["div1"],
                      "div2": r.metrics["div2"]} for r in results}
    toxicity = [row["toxicity_probability"] for row in rows.values()]
    for name, metric, higher_better in TRADEOFFS:
        values = [row[metric] for row in rows.values()]
        if any(v is None for v in values):
            notes.append(f"{results[0].dataset}: no trade-off vs {name}: some models have no "
                         f"{metric} (evaluate them with a reference model)")
            taus = [None] * len(values)
        else:
            taus = tradeoff_factor(toxicity, values, w, v2_higher_is_better=higher_better)
        for row, tau in zip(rows.values(), taus):
            row[f"tau_{name}"] = tau
    return rows
