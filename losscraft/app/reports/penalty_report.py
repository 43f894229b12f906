"""The gradient-norm penalty's share during training, per compared model: read from the
``metrics.jsonl`` of the run each evaluation's target came from (`losscraft.core.penalty_share`
logs ``<term>/share`` on every ``share_every``-th step; ``steps`` counts those). Shown by
``losscraft compare`` and the Table 1 report."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from losscraft.evaluation.result import EvalResult

SHARE = "/share"


@dataclass
class PenaltySummary:
    """One penalty term of one model's training run: ``weight`` (λ), ``sq_norm`` (median of
    ‖g‖² over the steps), ``share`` (median of ‖∇(λ‖g‖²)‖ / ‖∇(rest)‖), ``low`` / ``high``
    (its smallest and largest step), ``steps`` (steps that logged it), ``run`` (the file)."""

    term: str
    weight: float
    sq_norm: float
    share: float
    low: float
    high: float
    steps: int
    run: str

    def cell(self) -> str:
        return (f"{self.share:.2e} [{self.low:.1e}, {self.high:.1e}]")


def find_metrics(target: str) -> Path | None:
    """The ``metrics.jsonl`` of the run that produced ``target`` (a run directory, its
    ``final`` folder or a stage's model folder), or ``None``."""
    path = Path(target)
    for folder in [path, *list(path.parents)[:4]]:
        if (folder / "metrics.jsonl").is_file():
            return folder / "metrics.jsonl"
    return None


def summarise(metrics: Path) -> list[PenaltySummary]:
    """Every penalty term's summary over the steps of ``metrics`` (no term: empty)."""
    rows: dict[str, list[dict]] = {}
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        for key, value in record.items():
            if key.endswith(SHARE) and isinstance(value, (int, float)) and math.isfinite(value):
                rows.setdefault(key[:-len(SHARE)], []).append(record)
    out = []
    for term, records in rows.items():
        shares = [float(r[term + SHARE]) for r in records]
        norms = [float(r[term]) for r in records if isinstance(r.get(term), (int, float))]
        out.append(PenaltySummary(
            term, float(records[-1].get(f"{term}/weight", math.nan)),
            statistics.median(norms) if norms else math.nan, statistics.median(shares),
            min(shares), max(shares), len(shares), str(metrics)))
    return out


def penalty_by_model(evaluations: list[tuple[Path, EvalResult]]
                     ) -> dict[str, list[PenaltySummary]]:
    """Per model label: its run's penalty summaries (models without a run or penalty: none)."""
    found: dict[str, list[PenaltySummary]] = {}
    for _, result in evaluations:
        if result.model in found:
            continue
        metrics = find_metrics(result.target)
        found[result.model] = summarise(metrics) if metrics is not None else []
    return found


def markdown(by_model: dict[str, list[PenaltySummary]]) -> list[str]:
    """The section's lines (none when no model trained with a penalty)."""
    if not any(by_model.values()):
        return []
    lines = ["", "## Gradient-norm penalty during training", "",
             "Share: ‖∇(λ‖g‖²)‖ / ‖∇(rest of the objective)‖ per step, median [smallest, "
             "largest] over the steps that logged it; below 1e-4 the penalty does not act.", "",
             "| Model | term | λ | ‖g‖² (median) | share | steps |", "|---" * 6 + "|"]
    for model, summaries in by_model.items():
        if not summaries:
            lines.append(f"| {model} | – | – | – | – | – |")
        for s in summaries:
            lines.append(f"| {model} | {s.term} | {s.weight:g} | {s.sq_norm:.3e} | {s.cell()} | "
                         f"{s.steps} |")
    return lines


def csv_rows(by_model: dict[str, list[PenaltySummary]]) -> list[dict[str, object]]:
    return [{"model": m, "term": s.term, "weight": s.weight, "sq_norm_median": s.sq_norm,
             "share_median": s.share, "share_min": s.low, "share_max": s.high, "steps": s.steps}
            for m, summaries in by_model.items() for s in summaries]
