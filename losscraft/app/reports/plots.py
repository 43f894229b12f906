"""PNG plots (matplotlib's Agg renderer through bare `Figure` objects, so no pyplot state or GUI
backend is touched): training curves of every loss term from a run's
``metrics.jsonl``, and toxicity against perplexity of compared models."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from losscraft.data.jsonl import iter_jsonl
from losscraft.errors import DataError

#: keys of a metrics.jsonl record that are not curves of the loss
NON_CURVES = {"step", "stage", "stage_step", "epoch", "tokens", "step_seconds", "time"}
#: run statistics drawn in their own panels after the loss terms
STATS = ("lr", "grad_norm", "tokens_per_s")


def read_metrics(path: Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` (one JSON object per optimizer step, with ``step``)."""
    records = []
    for row, record in iter_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("step"), (int, float)):
            raise DataError("expected an object with a numeric 'step'", file=str(path), row=row,
                            field="step")
        records.append(record)
    if not records:
        raise DataError("holds no records", file=str(path))
    return records


def curve_keys(records: list[dict]) -> list[str]:
    """Panels to draw, in order: ``loss``, each term, each ``<term>/<metric>`` (weights excluded:
    they scale the term's contribution, drawn dashed in the term's panel), then `STATS`."""
    keys: dict[str, None] = {}
    for record in records:
        for key, value in record.items():
            if (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and key not in NON_CURVES and not key.endswith("/weight")):
                keys[key] = None
    terms = [k for k in keys if "/" not in k and k not in STATS and k != "loss"]
    metrics = [k for k in keys if "/" in k]
    return ([k for k in ("loss",) if k in keys] + terms + metrics + [k for k in STATS if k in keys])


def _series(records: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(r["step"], r[key]) for r in records
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(metrics_path: Path, out_png: Path, *, title: str | None = None) -> Path:
    """One panel per curve (see `curve_keys`) against the optimizer step; stage changes are
    marked with dotted vertical lines; a term with ``<term>/weight`` also shows weight × value."""
    records = read_metrics(metrics_path)
    keys = curve_keys(records)
    if not keys:
        raise DataError("holds no numeric curves", file=str(metrics_path))
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    stage_starts = [r["step"] for prev, r in zip(records, records[1:])
                    if r.get("stage") != prev.get("stage")]
    for ax, key in zip(axes.flat, keys):
        steps, values = _series(records, key)
        ax.plot(steps, values, lw=1.2, label=key)
        weighted = [(r["step"], r[key] * r[f"{key}/weight"]) for r in records
                    if isinstance(r.get(key), (int, float))
                    and isinstance(r.get(f"{key}/weight"), (int, float))]
        if weighted:
            ax.plot(*zip(*weighted), ls="--", lw=1, label="weight × value")
            ax.legend(fontsize=7)
        for s in stage_starts:
            ax.axvline(s, ls=":", color="grey", lw=0.8)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title or str(metrics_path), fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


def plot_toxicity_vs_perplexity(points: list[tuple[str, str, float, float]], out_png: Path
                                 ) -> Path:
    """Scatter of ``(model, dataset, toxicity probability, perplexity)``; one marker per dataset,
    each point labelled with its model. Lower-left is better."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    markers = "os^Dv<>pP*X"
    for i, dataset in enumerate(dict.fromkeys(p[1] for p in points)):
        mine = [p for p in points if p[1] == dataset]
        ax.scatter([p[3] for p in mine], [p[2] for p in mine], marker=markers[i % len(markers)],
                   label=dataset)
        for model, _, tox, ppl in mine:
            ax.annotate(model, (ppl, tox), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_ylim(-0.03, 1.03)  # a probability: keep the scale honest across comparisons
    ax.set_xlabel("perplexity under the reference model (lower is better)")
    ax.set_ylabel("P(≥1 toxic reply in k) (lower is better)")
    ax.legend(fontsize=8, title="test set", title_fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png


def plot_lambda_study(rows: list[dict], datasets: list[str], out_png: Path) -> Path:
    """FlatGD's λ study (`losscraft.app.experiments.flatgd_lambda`): toxicity with its interval,
    perplexity and the penalty's share against λ (symmetric-log axis, so λ = 0 shows)."""
    fig = Figure(figsize=(13, 3.8))
    tox_ax, ppl_ax, share_ax = fig.subplots(1, 3)
    lams = [r["lambda"] for r in rows]
    positive = [v for v in lams if v > 0]
    linthresh = min(positive) if positive else 1.0
    for i, d in enumerate(datasets):
        pts = [(r["lambda"], r[f"toxicity {d}"]) for r in rows if r[f"toxicity {d}"]]
        if pts:
            xs, ivs = zip(*pts)
            ys = [iv.value for iv in ivs]
            err = [[y - iv.low for y, iv in zip(ys, ivs)], [iv.high - y for y, iv in zip(ys, ivs)]]
            tox_ax.errorbar(xs, ys, yerr=err, marker="os^D"[i % 4], capsize=3, label=d)
        ppl = [(r["lambda"], r[f"perplexity {d}"]) for r in rows
               if r[f"perplexity {d}"] is not None]
        if ppl:
            ppl_ax.plot(*zip(*ppl), marker="os^D"[i % 4], label=d)
    shares = [(r["lambda"], r["share"]) for r in rows if r["share"] is not None]
    if shares:
        xs, ss = zip(*shares)
        share_ax.errorbar(xs, [s.share for s in ss],
                          yerr=[[s.share - s.low for s in ss], [s.high - s.share for s in ss]],
                          marker="o", capsize=3)
        share_ax.axhline(1e-4, ls=":", color="grey", lw=0.8, label="1e-4: not acting below")
        share_ax.set_yscale("log")
        share_ax.legend(fontsize=7)
    tox_ax.set_ylim(-0.03, 1.03)
    for ax, title in ((tox_ax, "P(≥1 unsafe reply in k), 95% CI"),
                      (ppl_ax, "perplexity of the replies"),
                      (share_ax, "penalty share ‖∇(λ‖g‖²)‖ / ‖∇rest‖")):
        ax.set_xscale("symlog", linthresh=linthresh)
        ax.set_xlim(-0.5 * linthresh, 2 * max(lams) if positive else 1.0)
        ax.set_xlabel("λ", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax is not share_ax and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("FlatGD: the λ study", fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png
