"""Rendering a `Comparison`: Markdown, CSV and rich tables in the layout of FlatGD Tables 1–3.

Table 1 cells read ``0.125 [0.050, 0.200]``: the toxicity probability and its 95% percentile
bootstrap interval over the test contexts (`losscraft.evaluation.bootstrap`); a cell without
samples behind it shows the value alone."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from losscraft.evaluation.bootstrap import Interval
from losscraft.app.reports import penalty_report
from losscraft.app.reports.comparison import Comparison
from losscraft.app.reports.eval_report import fmt

TRADEOFF_COLUMNS = ("toxicity_probability", "perplexity", "div1", "div2", "tau_fluency",
                    "tau_div1", "tau_div2")


def cell(c: Comparison, model: str, dataset: str) -> str:
    """A Table 1 cell: ``"0.125 [0.050, 0.200]"``, the value alone without an interval, or an
    en dash when the model was not evaluated on ``dataset``."""
    interval = c.table1_ci.get(model, {}).get(dataset)
    if interval is not None:
        return interval.format()
    value = c.table1.get(model, {}).get(dataset)
    return "–" if value is None else f"{value:.3f}"


def _column(c: Comparison, dataset: str) -> str:
    n = c.n_contexts(dataset)
    return dataset if n is None else f"{dataset} (n = {n})"


def _bootstrap_line(c: Comparison) -> str:
    b = c.bootstrap
    if not b or not c.table1_ci or not any(c.table1_ci.values()):
        return ""
    return (f"Cells: value [{100 * b['confidence']:g}% percentile bootstrap interval over the "
            f"test contexts, {b['resamples']} resamples, seed {b['seed']}]; n = test contexts.")


def _paired_matrix(c: Comparison, dataset: str) -> tuple[list[str], list[str], dict]:
    pairs = {(a, b): iv for a, b, iv in c.paired.get(dataset, [])}
    rows = list(dict.fromkeys(a for a, _ in pairs))
    cols = list(dict.fromkeys(b for _, b in pairs))
    return rows, cols, pairs


def paired_cell(interval: Interval | None) -> str:
    """``"+0.100 [+0.025, +0.175] *"``: the difference row − column with its paired interval;
    ``*`` when the interval excludes 0."""
    if interval is None:
        return ""
    return interval.format(signed=True) + (" *" if interval.excludes_zero() else "")


def markdown_tables(c: Comparison, w: float, *, figures: list[str] = ()) -> str:
    """Table 1 (with intervals), paired differences, prosocial shares when known, one trade-off
    table per test set, notes, and links to ``figures`` (file names)."""
    lines = ["# Comparison", "", "## Table 1 — probability of ≥1 toxic reply in k samples", ""]
    if _bootstrap_line(c):
        lines += [_bootstrap_line(c), ""]
    lines += ["| Model | " + " | ".join(_column(c, d) for d in c.datasets) + " |",
              "|---" * (len(c.datasets) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(cell(c, m, d) for d in c.datasets) + " |"
              for m in c.models]
    if any(c.paired.get(d) for d in c.datasets):
        lines += ["", "## Table 1, paired differences (row − column)", "",
                  "Positive: the row model is more often toxic than the column model on the same "
                  "contexts. Interval: paired bootstrap (the same contexts resampled for both); "
                  "`*` marks an interval that excludes 0."]
        for d in c.datasets:
            rows, cols, pairs = _paired_matrix(c, d)
            if not pairs:
                continue
            lines += ["", f"### {d}", "", "| row − column | " + " | ".join(cols) + " |",
                      "|---" * (len(cols) + 1) + "|"]
            lines += [f"| {a} | " + " | ".join(paired_cell(pairs.get((a, b))) for b in cols)
                      + " |" for a in rows]
    if c.prosocial:
        sets = [d for d in c.datasets if any(d in v for v in c.prosocial.values())]
        lines += ["", "## Share of prosocial replies (judge's P(prosocial) > threshold; higher "
                  "is better)", "", "| Model | " + " | ".join(_column(c, d) for d in sets) + " |",
                  "|---" * (len(sets) + 1) + "|"]
        lines += [f"| {m} | " + " | ".join(c.prosocial[m][d].format() if d in c.prosocial.get(
            m, {}) else "–" for d in sets) + " |" for m in c.models if m in c.prosocial]
    for d in c.datasets:
        lines += ["", f"## Toxicity trade-off factors on {d} (w = {w}; lower is better)", "",
                  "| Model | Toxicity | PPL | Div-1 | Div-2 | τ vs fluency ↓ | τ vs Div-1 ↓ | "
                  "τ vs Div-2 ↓ |", "|---" * 8 + "|"]
        lines += [f"| {m} | " + " | ".join(fmt(row[k]) for k in TRADEOFF_COLUMNS) + " |"
                  for m, row in c.tradeoffs[d].items()]
    lines += penalty_report.markdown(c.penalty)
    if c.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in c.notes]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def write_csvs(c: Comparison, out_dir: Path) -> dict[str, Path]:
    """``table1_toxicity.csv`` (model × test set), ``table1_ci.csv`` (one row per metric, test set
    and model: value, interval, contexts and the formatted cell), ``table1_paired.csv`` (one row
    per test set and pair of models: the difference and its paired interval) and
    ``tradeoffs.csv`` (one row per test set and model: the metric values and the three trade-off
    factors)."""
    table1, tradeoff = out_dir / "table1_toxicity.csv", out_dir / "tradeoffs.csv"
    ci_file, paired_file = out_dir / "table1_ci.csv", out_dir / "table1_paired.csv"
    with ci_file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["metric", "dataset", "model", "value", "ci_low", "ci_high",
                         "n_contexts", "cell"])
        for metric, cells in (("toxicity_probability", c.table1_ci),
                              ("prosocial_response_rate", c.prosocial)):
            for d in c.datasets:
                for m in c.models:
                    iv = cells.get(m, {}).get(d)
                    if iv is not None:
                        writer.writerow([metric, d, m, iv.value, iv.low, iv.high, iv.n,
                                         iv.format()])
                    elif metric == "toxicity_probability" and d in c.table1.get(m, {}):
                        writer.writerow([metric, d, m, c.table1[m][d], "", "", "",
                                         cell(c, m, d)])
    with paired_file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model_a", "model_b", "difference", "ci_low", "ci_high",
                         "n_contexts", "excludes_zero", "only_a_unsafe", "only_b_unsafe",
                         "mcnemar_p"])
        for d in c.datasets:
            for a, b, iv in c.paired.get(d, []):
                test = c.exact.get(d, {}).get((a, b))
                writer.writerow([d, a, b, iv.value, iv.low, iv.high, iv.n, iv.excludes_zero(),
                                 *((test.a_only, test.b_only, test.p) if test else ("", "", ""))])
    with table1.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["model", *c.datasets])
        for m in c.models:
            writer.writerow([m, *(c.table1[m].get(d, "") for d in c.datasets)])
    with tradeoff.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "model", *TRADEOFF_COLUMNS])
        for d in c.datasets:
            for m, row in c.tradeoffs[d].items():
                writer.writerow([d, m, *("" if row[k] is None else row[k]
                                         for k in TRADEOFF_COLUMNS)])
    files = {"table1_csv": table1, "table1_ci_csv": ci_file, "table1_paired_csv": paired_file,
             "tradeoffs_csv": tradeoff}
    rows = penalty_report.csv_rows(c.penalty)
    if rows:
        files["penalty_csv"] = out_dir / "penalty_share.csv"
        with files["penalty_csv"].open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return files


def rich_tables(c: Comparison, w: float) -> list[Table]:
    """Table 1 and one trade-off table per test set, for printing with rich."""
    t1 = Table(title="Table 1 — probability of ≥1 toxic reply in k samples (lower is better)",
               caption=_bootstrap_line(c) or None)
    t1.add_column("Model")
    for d in c.datasets:
        t1.add_column(_column(c, d), justify="right")
    for m in c.models:
        t1.add_row(m, *(cell(c, m, d) for d in c.datasets))
    tables = [t1]
    for d in c.datasets:
        rows, cols, pairs = _paired_matrix(c, d)
        if not pairs:
            continue
        t = Table(title=f"{d}: paired differences in Table 1 (row − column; * excludes 0)")
        t.add_column("row − column")
        for b in cols:
            t.add_column(b, justify="right")
        for a in rows:
            t.add_row(a, *(paired_cell(pairs.get((a, b))) for b in cols))
        tables.append(t)
    if c.prosocial:
        sets = [d for d in c.datasets if any(d in v for v in c.prosocial.values())]
        t = Table(title="Share of prosocial replies (higher is better)")
        t.add_column("Model")
        for d in sets:
            t.add_column(_column(c, d), justify="right")
        for m in c.models:
            if m in c.prosocial:
                t.add_row(m, *(c.prosocial[m][d].format() if d in c.prosocial[m] else "–"
                               for d in sets))
        tables.append(t)
    if any(c.penalty.values()):
        t = Table(title="Gradient-norm penalty during training: ‖∇(λ‖g‖²)‖ / ‖∇(rest)‖, median "
                  "[min, max] over steps (below 1e-4: not acting)")
        for name in ("Model", "term", "λ", "‖g‖²", "share", "steps"):
            t.add_column(name)
        for m, summaries in c.penalty.items():
            for s in summaries:
                t.add_row(m, s.term, f"{s.weight:g}", f"{s.sq_norm:.3e}", s.cell(), str(s.steps))
        tables.append(t)
    for d in c.datasets:
        t = Table(title=f"Toxicity trade-off factors on {d} (w = {w}; lower is better)")
        for name in ("Model", "Toxicity", "PPL", "Div-1", "Div-2", "τ fluency", "τ Div-1",
                     "τ Div-2"):
            t.add_column(name, justify="left" if name == "Model" else "right")
        for m, row in c.tradeoffs[d].items():
            t.add_row(m, *(fmt(row[k]) for k in TRADEOFF_COLUMNS))
        tables.append(t)
    return tables


def print_comparison(c: Comparison, w: float, console: Console | None = None) -> None:
    console = console or Console()
    for table in rich_tables(c, w):
        console.print(table)
    for note in c.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
