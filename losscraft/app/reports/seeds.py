"""Table 1 pooled over several runs per model: training seeds and generation seeds.

One run of a model on a test set is one `EvalResult` (k sampled replies per context). A cell over
one run carries neither training-seed nor sampling variance; pooled over runs, each context's
outcome is the share of runs in which at least one of its k replies was unsafe
(`toxic_per_context`), the cell is the mean of those shares over contexts, and

- its 95% interval is a bootstrap over contexts (every run's outcomes of a context move together);
- the spread over training seeds (each seed's cell, averaged over its generation seeds) and over
  generation seeds (averaged over training seeds) is reported beside it;
- every pair of models gets the paired difference with its bootstrap interval and the sign-flip
  `paired_permutation_test` on the per-context differences (exact McNemar on one run each).

`pool_runs` computes it; `write_pooled` writes ``table1_seeds.csv`` (one row per cell, with every
run's value), ``table1_seeds_paired.csv`` and ``table1_seeds.md`` into a comparison folder, where
the Table 1 driver's ``paper_markdown`` prefers them to the single-run files.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from losscraft.errors import DataError
from losscraft.evaluation import bootstrap as B
from losscraft.app.reports.comparison import check_same_contexts, toxic_per_context
from losscraft.evaluation.paired_tests import Permutation, paired_permutation_test
from losscraft.evaluation.result import EvalResult

CELLS_FILE = "table1_seeds.csv"
PAIRED_FILE = "table1_seeds_paired.csv"
MARKDOWN_FILE = "table1_seeds.md"


@dataclass(frozen=True)
class Run:
    """One evaluation: ``model`` trained with ``train_seed``, sampled with ``generation_seed``."""

    model: str
    train_seed: int
    generation_seed: int
    result: EvalResult
    path: Path


@dataclass
class PooledCell:
    """A model on a test set over its runs (see the module doc)."""

    interval: B.Interval
    by_run: dict[tuple[int, int], float]
    per_context: list[float]

    def spread(self, which: int) -> tuple[float, float]:
        """(min, max) over training seeds (``which = 0``) or generation seeds (``1``) of the cell
        averaged over the other seed."""
        groups: dict[int, list[float]] = {}
        for key, value in self.by_run.items():
            groups.setdefault(key[which], []).append(value)
        means = [sum(v) / len(v) for v in groups.values()]
        return min(means), max(means)


@dataclass
class Pooled:
    """``cells[dataset][model]``; ``paired[dataset]``: ``(a, b, interval of a − b, test)``."""

    models: list[str]
    datasets: list[str]
    cells: dict[str, dict[str, PooledCell]] = field(default_factory=dict)
    paired: dict[str, list[tuple[str, str, B.Interval, Permutation]]] = field(default_factory=dict)


def pool_runs(runs: Sequence[Run], *, resamples: int = B.RESAMPLES,
              confidence: float = B.CONFIDENCE, seed: int = B.SEED) -> Pooled:
    """Pool ``runs`` per (test set, model); every run of a test set must have sampled the same
    contexts (checked by their SHA-256) and hold its samples."""
    opts = dict(resamples=resamples, confidence=confidence, seed=seed)
    models = list(dict.fromkeys(r.model for r in runs))
    datasets = list(dict.fromkeys(r.result.dataset for r in runs))
    pooled = Pooled(models, datasets)
    for dataset in datasets:
        members = [r for r in runs if r.result.dataset == dataset]
        check_same_contexts(dataset, [(r.path, r.result) for r in members])
        first = members[0]
        outcomes: dict[str, dict[tuple[int, int], list[float]]] = {}
        for run in members:
            values = toxic_per_context(run.result)
            if values is None:
                raise DataError(f"the evaluation of '{run.model}' on '{dataset}' holds no "
                                "samples to pool", file=str(run.path), field="samples")
            key = (run.train_seed, run.generation_seed)
            if key in outcomes.setdefault(run.model, {}):
                raise DataError(f"'{run.model}' on '{dataset}' with training seed {key[0]} and "
                                f"generation seed {key[1]} is given twice", file=str(run.path))
            outcomes[run.model][key] = values
        cells = {}
        for model, by_run in outcomes.items():
            n_runs = len(by_run)
            per_context = [sum(v[i] for v in by_run.values()) / n_runs
                           for i in range(len(first.result.samples))]
            cells[model] = PooledCell(B.bootstrap_interval(per_context, **opts),
                                      {k: sum(v) / len(v) for k, v in by_run.items()},
                                      per_context)
        pooled.cells[dataset] = cells
        ordered = [m for m in models if m in cells]
        pooled.paired[dataset] = [
            (a, b, B.paired_difference_interval(cells[a].per_context, cells[b].per_context,
                                                **opts),
             paired_permutation_test(cells[a].per_context, cells[b].per_context, seed=seed))
            for i, a in enumerate(ordered) for b in ordered[i + 1:]]
    return pooled


def _range(low: float, high: float) -> str:
    return f"{low:.3f}" if low == high else f"{low:.3f}–{high:.3f}"


def write_pooled(pooled: Pooled, out_dir: Path) -> list[Path]:
    """Write the three files of the module doc into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells_path, paired_path, md_path = (out_dir / CELLS_FILE, out_dir / PAIRED_FILE,
                                        out_dir / MARKDOWN_FILE)
    with cells_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model", "value", "ci_low", "ci_high", "cell", "runs",
                         "train_seed_min", "train_seed_max", "generation_seed_min",
                         "generation_seed_max", "by_run"])
        for dataset in pooled.datasets:
            for model, cell in pooled.cells[dataset].items():
                iv = cell.interval
                writer.writerow([dataset, model, f"{iv.value:.6f}", f"{iv.low:.6f}",
                                 f"{iv.high:.6f}", iv.format(), len(cell.by_run),
                                 *(f"{x:.6f}" for x in cell.spread(0)),
                                 *(f"{x:.6f}" for x in cell.spread(1)),
                                 json.dumps({f"{t}/{g}": round(v, 6)
                                             for (t, g), v in sorted(cell.by_run.items())})])
    with paired_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model_a", "model_b", "difference", "ci_low", "ci_high",
                         "differing_contexts", "permutation_p", "exact"])
        for dataset in pooled.datasets:
            for a, b, iv, test in pooled.paired[dataset]:
                writer.writerow([dataset, a, b, f"{iv.value:.6f}", f"{iv.low:.6f}",
                                 f"{iv.high:.6f}", test.nonzero, f"{test.p:.6g}",
                                 str(test.exact).lower()])
    lines = ["# Table 1 pooled over runs", "",
             "Cell: mean over contexts of the share of runs with at least one unsafe reply in k, "
             "[95% bootstrap interval over contexts]; the ranges are the cell per training seed "
             "and per generation seed.", ""]
    for dataset in pooled.datasets:
        lines += [f"## {dataset}", "", "| model | cell [95% CI] | runs | training seeds | "
                  "generation seeds |", "|---|---|---|---|---|"]
        for model, cell in pooled.cells[dataset].items():
            lines.append(f"| {model} | {cell.interval.format()} | {len(cell.by_run)} | "
                         f"{_range(*cell.spread(0))} | {_range(*cell.spread(1))} |")
        lines += ["", "| a − b | difference [95% CI] | contexts that differ | permutation p |",
                  "|---|---|---|---|"]
        for a, b, iv, test in pooled.paired[dataset]:
            lines.append(f"| {a} − {b} | {iv.format(signed=True)} | {test.nonzero} | "
                         f"{test.p:.3g}{'' if test.exact else ' (Monte Carlo)'} |")
        lines.append("")
    md_path.write_text("\n".join(lines), encoding="utf-8")
    return [cells_path, paired_path, md_path]
