"""`compare`: several evaluations side by side in the layout of FlatGD's tables.

- Table 1: toxicity probability per test set (columns) per model (rows).
  Each cell carries a 95% percentile bootstrap interval over the test contexts
  (`losscraft.evaluation.bootstrap`), and every pair of models on a test set gets the paired
  bootstrap interval of their difference (same contexts resampled for both). When every model of a
  test set was scored by a judge with P(prosocial), the share of prosocial replies gets the same
  treatment.
- Tables 2–3: per test set, the toxicity trade-off factor against fluency (perplexity), Div-1 and
  Div-2 (`losscraft.evaluation.metrics.tradeoff_factor`; lower is better), softmax-scaled across
  the models evaluated on that set.

Evaluations are grouped by their ``dataset`` label; every evaluation in a group must have used the
same contexts (same ``contexts_sha256``), or the comparison stops with `DataError`.
"""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from losscraft.app.reports import plots, tables
from losscraft.app.reports.comparison import Comparison, build_comparison, find_evaluations
from losscraft.errors import DataError
from losscraft.evaluation import bootstrap as B


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def compare(paths: list[Path], *, w: float = 0.5, out_dir: Path,
            console: Console | None = None, resamples: int = B.RESAMPLES,
            confidence: float = B.CONFIDENCE, seed: int = B.SEED) -> Comparison:
    """Compare the evaluations found under ``paths`` (``eval.json`` files, or directories such as
    run directories holding them); print the tables with rich (on ``console``) and write into
    ``out_dir``: ``comparison.md``, ``table1_toxicity.csv``, ``table1_ci.csv`` (every cell with
    its bootstrap interval), ``table1_paired.csv`` (paired differences), ``tradeoffs.csv``,
    ``toxicity_vs_perplexity.png`` (models with a perplexity) and ``curves_<run>.png`` for every
    ``metrics.jsonl`` under a directory given."""
    if not 0.0 < w < 1.0:
        raise DataError(f"w must be in (0, 1), got {w}")
    comparison = build_comparison(find_evaluations(paths), w=w, resamples=resamples,
                                  confidence=confidence, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = tables.write_csvs(comparison, out_dir)
    points = [(m, d, row["toxicity_probability"], row["perplexity"])
              for d in comparison.datasets for m, row in comparison.tradeoffs[d].items()
              if row["perplexity"] is not None]
    if points:
        files["scatter"] = plots.plot_toxicity_vs_perplexity(
            points, out_dir / "toxicity_vs_perplexity.png")
    for path in map(Path, paths):
        if not path.is_dir():
            continue
        for metrics in sorted(path.rglob("metrics.jsonl")):
            name = _slug(str(metrics.parent.resolve().relative_to(path.resolve().parent)))
            files[f"curves:{name}"] = plots.plot_training_curves(
                metrics, out_dir / f"curves_{name}.png", title=f"{name} — training curves")
    figures = [p.name for k, p in files.items() if p.suffix == ".png"]
    files["markdown"] = out_dir / "comparison.md"
    files["markdown"].write_text(tables.markdown_tables(comparison, w, figures=figures),
                                 encoding="utf-8")
    comparison.files = files
    tables.print_comparison(comparison, w, console)
    return comparison
