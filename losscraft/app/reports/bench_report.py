"""Write a `BenchResult`: a rich table on the terminal, JSON (everything) and CSV (one line per
row; ``--compare`` ratios in a second CSV)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from losscraft.bench.runner import BenchResult

#: CSV columns of the per-implementation rows, in order.
ROW_FIELDS = ("impl", "objective", "variant", "plugin", "tokens", "vocab", "hidden", "dtype",
              "device", "experts", "input", "rows", "length", "status", "reason", "median_s",
              "spread", "tokens_per_s", "repeats", "peak_bytes", "peak_mib", "input_bytes",
              "reference", "value_rel_err", "grad_rel_err", "correct", "alternated")
#: CSV columns of the ``--compare`` rows.
COMPARE_FIELDS = ("a", "b", "tokens", "vocab", "hidden", "dtype", "device", "experts", "input",
                  "status", "reason", "median_a_s", "median_b_s", "time_ratio", "time_ratio_min",
                  "time_ratio_max", "peak_a_bytes", "peak_b_bytes", "memory_ratio")

#: CSV columns of ``--full-step`` rows.
STEP_FIELDS = ("config", "model", "device", "rows", "length", "response_tokens", "penalty",
               "status", "reason", "median_s", "repeats", "ratio_to_nll", "ratio_min",
               "ratio_max", "base", "ratio_to_base", "ratio_to_base_min", "ratio_to_base_max",
               "peak_bytes", "share_policy_forward", "share_expert_forwards",
               "share_loss_heads", "share_penalty", "share_backward", "share_optimizer")


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf/nan
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(result: BenchResult) -> dict:
    """The whole result as plain data (non-finite floats become null)."""
    return {"meta": result.meta,
            "rows": [{k: _clean(v) for k, v in r.items()} for r in result.rows],
            "comparisons": [{k: _clean(v) for k, v in c.items()} for c in result.comparisons]}


def write_json(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(result), indent=2, allow_nan=False) + "\n")


def write_csv(rows: list[dict], fields, path: Path, meta: dict) -> None:
    """One line per row with ``fields``, plus the device name and versions on every line (so a
    CSV copied on its own still says where it was measured)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = ("device_name", "torch", "transformers")
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*fields, *extra], extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            line = {k: _clean(row.get(k)) for k in fields}
            line.update(device_name=meta.get("devices", {}).get(row.get("device"), ""),
                        torch=meta.get("torch"), transformers=meta.get("transformers"))
            writer.writerow(line)


def write_all(result: BenchResult, out: Path) -> list[Path]:
    """``out`` is a file stem or folder: writes ``.json``, ``.csv`` (and ``-compare.csv``)."""
    stem = out / "bench" if out.is_dir() or not out.suffix else out.with_suffix("")
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv")]
    write_json(result, paths[0])
    full_step = bool(result.rows) and "config" in result.rows[0]
    write_csv(result.rows, STEP_FIELDS if full_step else ROW_FIELDS, paths[1], result.meta)
    if result.comparisons:
        cmp = stem.with_name(stem.name + "-compare.csv")
        write_csv(result.comparisons, COMPARE_FIELDS, cmp, result.meta)
        paths.append(cmp)
    return paths


def _fmt_time(s):
    if s is None:
        return "—"
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.3f} s"


def _fmt_mib(b):
    return "—" if b is None else f"{b / 2 ** 20:,.1f}"


def rows_table(result: BenchResult) -> Table:
    """One line per implementation × point."""
    table = Table(title="loss heads: forward + backward", show_lines=False)
    for col in ("impl", "tokens", "V", "dtype", "device", "input", "median", "±IQR",
                "tokens/s", "peak MiB", "rel err vs float64 ref (value / grad)"):
        table.add_column(col, justify="right" if col not in ("impl", "device", "input") else "left")
    for r in result.rows:
        base = [r["impl"], str(r["tokens"]), str(r["vocab"]), r["dtype"], r["device"], r["input"]]
        if r["status"] != "ok":
            style = "yellow" if r["status"] == "skipped" else "red"
            table.add_row(*base, f"[{style}]{r['status']}: {escape(r['reason'])}[/]", "", "", "",
                          "")
            continue
        err = "—"
        if "value_rel_err" in r:
            mark = "[green]✓[/]" if r.get("correct") else "[red]✗[/]"
            ref = r.get("reference", "").split("@")[0]
            who = "itself" if ref == r["impl"] else ref
            err = f"{r['value_rel_err']:.1e} / {r['grad_rel_err']:.1e} {mark} vs {who}"
        table.add_row(*base, _fmt_time(r["median_s"]), f"{100 * r['spread']:.0f}%",
                      f"{r['tokens_per_s']:,.0f}", _fmt_mib(r.get("peak_bytes")), err)
    return table


#: peer implementation → the losscraft implementation its ratios are taken against.
PEER_OF = {"js:liger": "js:fused", "js:liger_eager": "js:fused", "js:trl": "js:chunked",
           "npair:pml": "npair:losscraft", "safety_loss:liger": "safety_loss:plugin",
           "safety_loss:liger_fused": "safety_loss:fused"}


def peers_table(result: BenchResult) -> Table | None:
    """``--peers``: each peer's time and memory over losscraft's at the same point (``None``
    when no peer ran)."""
    ok = {(r["impl"], r["tokens"], r["vocab"], r["dtype"], r["device"], r["input"],
           r["experts"]): r for r in result.rows if r["status"] == "ok"}
    table = Table(title="peers (peer / losscraft; > 1: losscraft faster / smaller)")
    for col in ("peer", "losscraft", "tokens", "V", "dtype", "input", "time ratio",
                "memory ratio", "value agrees"):
        table.add_column(col)
    for (impl, *point), row in ok.items():
        ours = ok.get((PEER_OF.get(impl), *point))
        if ours is None:
            continue
        mem = (row["peak_bytes"] / ours["peak_bytes"]
               if row.get("peak_bytes") and ours.get("peak_bytes") else None)
        agrees = {True: "[green]✓[/]", False: "[red]✗[/]"}.get(row.get("correct"), "—")
        table.add_row(impl, ours["impl"], str(point[0]), str(point[1]), point[2], point[4],
                      f"{row['median_s'] / ours['median_s']:.2f}",
                      "—" if mem is None else f"{mem:.2f}", agrees)
    return table if table.row_count else None


def compare_table(result: BenchResult) -> Table:
    """``--compare``: A/B ratios per point (time: median of alternating pairs)."""
    table = Table(title="--compare (A / B, alternating runs)")
    for col in ("A", "B", "tokens", "V", "dtype", "input", "A median", "B median",
                "time A/B (min–max)", "peak MiB A / B", "memory A/B"):
        table.add_column(col)
    for c in result.comparisons:
        base = [c["a"], c["b"], str(c["tokens"]), str(c["vocab"]), c["dtype"], c["input"]]
        if c["status"] != "ok":
            table.add_row(*base, f"[yellow]{c['status']}: {escape(c['reason'])}[/]", "", "", "",
                          "")
            continue
        mem = "—" if c.get("memory_ratio") is None else f"{c['memory_ratio']:.3f}"
        table.add_row(*base, _fmt_time(c["median_a_s"]), _fmt_time(c["median_b_s"]),
                      f"{c['time_ratio']:.3f} ({c['time_ratio_min']:.2f}–"
                      f"{c['time_ratio_max']:.2f})",
                      f"{_fmt_mib(c.get('peak_a_bytes'))} / {_fmt_mib(c.get('peak_b_bytes'))}",
                      mem)
    return table
