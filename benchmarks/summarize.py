"""Print Markdown tables of `losscraft bench` JSON results (what RESULTS.md quotes).

Usage: python benchmarks/summarize.py benchmarks/results/NAME/bench.json [...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def mib(b):
    return "—" if b is None else f"{b / 2 ** 20:,.0f}"


def secs(s):
    return "—" if s is None else (f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s")


def summarize(path: Path) -> str:
    data = json.loads(path.read_text())
    meta = data["meta"]
    out = [f"### {path.parent.name}", "",
           f"`{meta.get('command', '')}` — {meta.get('time_utc', '')}, "
           f"{', '.join(f'{d}: {n}' for d, n in meta.get('devices', {}).items())}, "
           f"torch {meta.get('torch')}, transformers {meta.get('transformers')}, "
           f"{meta.get('torch_threads')} thread(s), load average at start "
           f"{meta.get('load_average_start')}", ""]
    if data.get("comparisons"):
        out += ["| A | B | tokens | V | dtype | input | A median | B median | time A/B "
                "(min–max) | peak MiB A / B | memory A/B |",
                "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
        for c in data["comparisons"]:
            if c["status"] != "ok":
                out.append(f"| {c['a']} | {c['b']} | {c['tokens']} | {c['vocab']} | "
                           f"{c['dtype']} | {c['input']} | {c['status']}: {c['reason']} "
                           "| | | | |")
                continue
            mem = "—" if c.get("memory_ratio") is None else f"{c['memory_ratio']:.3f}"
            out.append(f"| {c['a']} | {c['b']} | {c['tokens']} | {c['vocab']} | {c['dtype']} | "
                       f"{c['input']} | {secs(c['median_a_s'])} | {secs(c['median_b_s'])} | "
                       f"{c['time_ratio']:.2f} ({c['time_ratio_min']:.2f}–"
                       f"{c['time_ratio_max']:.2f}) | {mib(c.get('peak_a_bytes'))} / "
                       f"{mib(c.get('peak_b_bytes'))} | {mem} |")
        return "\n".join(out) + "\n"
    rows = data["rows"]
    if rows and "config" in rows[0]:
        out += ["| config | median | × nll (min–max) | × base | peak MiB | policy fwd | "
                "experts | loss heads | penalty | backward | optimizer |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["status"] != "ok":
                out.append(f"| {r['config']} | {r['status']}: {r['reason']} | | | | | | | | | |")
                continue
            base = "—" if not r.get("base") else (
                f"{r['ratio_to_base']:.2f} ({r['ratio_to_base_min']:.2f}–"
                f"{r['ratio_to_base_max']:.2f}) × {r['base']}")
            shares = " | ".join(f"{100 * r[f'share_{s}']:.0f}%" for s in (
                "policy_forward", "expert_forwards", "loss_heads", "penalty", "backward",
                "optimizer"))
            out.append(f"| {r['config']} | {secs(r['median_s'])} | {r['ratio_to_nll']:.2f} "
                       f"({r['ratio_min']:.2f}–{r['ratio_max']:.2f}) | {base} | "
                       f"{mib(r.get('peak_bytes'))} | {shares} |")
        return "\n".join(out) + "\n"
    out += ["| impl | tokens | V | dtype | input | median | ±IQR | tokens/s | peak MiB | "
            "rel. err value / grad |", "|---|---:|---:|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            out.append(f"| {r['impl']} | {r['tokens']} | {r['vocab']} | {r['dtype']} | "
                       f"{r['input']} | {r['status']}: {r['reason']} | | | | |")
            continue
        err = "—" if "value_rel_err" not in r else (
            f"{r['value_rel_err']:.1e} / {r['grad_rel_err']:.1e}"
            + (" ✓" if r.get("correct") else " ✗"))
        out.append(f"| {r['impl']} | {r['tokens']} | {r['vocab']} | {r['dtype']} | "
                   f"{r['input']} | {secs(r['median_s'])} | {100 * r['spread']:.0f}% | "
                   f"{r['tokens_per_s']:,.0f} | {mib(r.get('peak_bytes'))} | {err} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarize(Path(arg)))
