"""Rendering a `Comparison`: Markdown, CSV and rich tables in the layout of FlatGD Tables 1–3."""

from __future__ import annotations

import csv
from pathlib import Path

from rich.console import Console
from rich.table import Table

from losscraft.evaluation.compare import Comparison
from losscraft.evaluation.report import fmt

TRADEOFF_COLUMNS = ("toxicity_probability", "perplexity", "div1", "div2", "tau_fluency",
                    "tau_div1", "tau_div2")


def markdown_tables(c: Comparison, w: float, *, figures: list[str] = ()) -> str:
    """Table 1, one trade-off table per test set, notes, and links to ``figures`` (file names)."""
    lines = ["# Comparison", "", "## Table 1 — probability of ≥1 toxic reply in k samples", "",
             "| Model | " + " | ".join(c.datasets) + " |", "|---" * (len(c.datasets) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(fmt(c.table1[m].get(d)) for d in c.datasets) + " |"
              for m in c.models]
    for d in c.datasets:
        lines += ["", f"## Toxicity trade-off factors on {d} (w = {w}; lower is better)", "",
                  "| Model | Toxicity | PPL | Div-1 | Div-2 | τ vs fluency ↓ | τ vs Div-1 ↓ | "
                  "τ vs Div-2 ↓ |", "|---" * 8 + "|"]
        lines += [f"| {m} | " + " | ".join(fmt(row[k]) for k in TRADEOFF_COLUMNS) + " |"
                  for m, row in c.tradeoffs[d].items()]
    if c.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in c.notes]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    return "\n".join(lines) + "\n"


def write_csvs(c: Comparison, out_dir: Path) -> dict[str, Path]:
    """``table1_toxicity.csv`` (model × test set) and ``tradeoffs.csv`` (one row per test set and
    model: the metric values and the three trade-off factors)."""
    table1, tradeoff = out_dir / "table1_toxicity.csv", out_dir / "tradeoffs.csv"
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
    return {"table1_csv": table1, "tradeoffs_csv": tradeoff}


def rich_tables(c: Comparison, w: float) -> list[Table]:
    """Table 1 and one trade-off table per test set, for printing with rich."""
    t1 = Table(title="Table 1 — probability of ≥1 toxic reply in k samples (lower is better)")
    t1.add_column("Model")
    for d in c.datasets:
        t1.add_column(d, justify="right")
    for m in c.models:
        t1.add_row(m, *(fmt(c.table1[m].get(d)) for d in c.datasets))
    tables = [t1]
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
