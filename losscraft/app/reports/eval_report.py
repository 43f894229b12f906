"""Writing one evaluation: ``eval.json`` (every number and setting), ``report.md`` and
``report.html`` (metrics table, the judge's probe accuracy when known, settings, and every sampled
reply with its P(unsafe) and, when scored, P(prosocial))."""

from __future__ import annotations

import html
from pathlib import Path

from losscraft.evaluation.result import EVAL_FILE, EvalResult
from losscraft.runtime.safe_files import write_file

METRIC_LABELS = {
    "toxicity_probability": "P(≥1 toxic in k)",
    "expected_max_toxicity": "Expected max P(unsafe)",
    "toxic_response_rate": "Toxic replies (share)",
    "mean_p_unsafe": "Mean P(unsafe)",
    "perplexity": "Perplexity (reference)",
    "div1": "Div-1",
    "div2": "Div-2",
    "mean_words": "Mean reply words",
    "prosocial_response_rate": "Prosocial replies (share)",
    "mean_p_prosocial": "Mean P(prosocial)",
    "num_contexts": "Contexts",
    "num_responses": "Replies",
}
#: metrics shown only when present (prosociality needs a scorer with ``p_prosocial``;
#: ``mean_words`` is missing from evaluations written before it existed)
OPTIONAL_METRICS = ("mean_words", "prosocial_response_rate", "mean_p_prosocial")
#: probe metrics of the judge shown in reports (`losscraft.evaluation.run_eval.judge_probe`)
PROBE_LABELS = {
    "accuracy": "accuracy (safe vs unsafe)",
    "unsafe_recall": "unsafe recall",
    "unsafe_precision": "unsafe precision",
    "prosocial_accuracy": "prosocial accuracy",
    "n": "probe pairs",
}


def metric_rows(metrics: dict) -> list[tuple[str, str, object]]:
    """``(key, label, value)`` of every metric to show: all of `METRIC_LABELS`, optional ones
    only when present."""
    return [(key, label, metrics.get(key)) for key, label in METRIC_LABELS.items()
            if key in metrics or key not in OPTIONAL_METRICS]


def probe_rows(probe: dict | None) -> list[tuple[str, str, object]]:
    """``(key, label, value)`` of the judge's probe metrics that are present."""
    return [(key, label, probe[key]) for key, label in PROBE_LABELS.items()
            if probe and key in probe]


def _p3(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _has_prosocial(result: EvalResult) -> bool:
    return any(r.p_prosocial is not None for s in result.samples for r in s.responses)


def fmt(value) -> str:
    """A metric value as text: floats to 4 decimals, ``None`` as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def fmt_setting(value) -> str:
    """A setting as written (``None`` as an en dash)."""
    return "–" if value is None else str(value)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ⏎ ")


def markdown_report(result: EvalResult) -> str:
    threshold = result.settings.get("threshold", 0.5)
    lines = [f"# Evaluation of {result.model} on {result.dataset}", "",
             f"Target: `{result.target}` · contexts SHA-256 `{result.contexts_sha256[:16]}…`", "",
             "## Metrics", "", "| Metric | Value |", "|---|---|"]
    lines += [f"| {label} | {fmt(value)} |" for _, label, value in metric_rows(result.metrics)]
    probe = probe_rows(result.info.get("judge_probe"))
    if probe:
        lines += ["", "## Judge", "", "The scorer's accuracy on its labelled probe set "
                  "(how far its verdicts can be trusted).", "", "| Probe metric | Value |",
                  "|---|---|"]
        lines += [f"| {label} | {fmt(value)} |" for _, label, value in probe]
    lines += ["", "## Settings", "", "| Setting | Value |", "|---|---|"]
    lines += [f"| {key} | {_md_cell(fmt_setting(value))} |"
              for key, value in result.settings.items()]
    lines += ["", "## Samples", "",
              f"Replies with P(unsafe) > {threshold} are marked **toxic**.", ""]
    prosocial = _has_prosocial(result)
    for i, sample in enumerate(result.samples, start=1):
        lines.append(f"### Context {i}")
        lines += [f"> {_md_cell(turn)}" + "  " for turn in sample.context]
        lines += ["", "| # | P(unsafe) | P(prosocial) | Reply |", "|---|---|---|---|"] \
            if prosocial else ["", "| # | P(unsafe) | Reply |", "|---|---|---|"]
        for j, r in enumerate(sample.responses, start=1):
            mark = " **toxic**" if r.p_unsafe > threshold else ""
            pro = f" {_p3(r.p_prosocial)} |" if prosocial else ""
            lines.append(f"| {j} | {r.p_unsafe:.3f}{mark} |{pro} "
                         f"{_md_cell(r.text) or '*(empty)*'} |")
        lines.append("")
    return "\n".join(lines)


_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:.2em .6em;text-align:left;vertical-align:top}.toxic{background:#fdd}"
        "blockquote{margin:.2em 0;color:#444}")


def html_report(result: EvalResult) -> str:
    e = html.escape
    threshold = result.settings.get("threshold", 0.5)
    metrics_html = "".join(f"<tr><th>{e(label)}</th><td>{e(fmt(value))}</td></tr>"
                           for _, label, value in metric_rows(result.metrics))
    probe = probe_rows(result.info.get("judge_probe"))
    judge_html = ("<h2>Judge</h2><p>The scorer's accuracy on its labelled probe set.</p><table>"
                  + "".join(f"<tr><th>{e(label)}</th><td>{e(fmt(value))}</td></tr>"
                            for _, label, value in probe) + "</table>") if probe else ""
    prosocial = _has_prosocial(result)
    setting_rows = "".join(f"<tr><th>{e(k)}</th><td>{e(fmt_setting(v))}</td></tr>"
                           for k, v in result.settings.items())
    parts = []
    for i, sample in enumerate(result.samples, start=1):
        turns = "".join(f"<blockquote>{e(t)}</blockquote>" for t in sample.context)
        rows = "".join(
            f"<tr class=\"{'toxic' if r.p_unsafe > threshold else ''}\"><td>{j}</td>"
            f"<td>{r.p_unsafe:.3f}</td>"
            + (f"<td>{_p3(r.p_prosocial)}</td>" if prosocial else "")
            + f"<td>{e(r.text) or '<i>(empty)</i>'}</td></tr>"
            for j, r in enumerate(sample.responses, start=1))
        head = "<th>P(prosocial)</th>" if prosocial else ""
        parts.append(f"<details><summary>Context {i} — max P(unsafe) "
                     f"{sample.max_p_unsafe:.3f}</summary>{turns}<table><tr><th>#</th>"
                     f"<th>P(unsafe)</th>{head}<th>Reply</th></tr>{rows}</table></details>")
    title = e(f"Evaluation of {result.model} on {result.dataset}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
            f"<p>Target: <code>{e(result.target)}</code></p><h2>Metrics</h2><table>{metrics_html}"
            f"</table>{judge_html}<h2>Settings</h2><table>{setting_rows}</table><h2>Samples</h2>"
            f"<p>Rows shaded red: P(unsafe) &gt; {threshold}.</p>{''.join(parts)}</body></html>\n")


def write_outputs(result: EvalResult, out_dir: Path) -> dict[str, Path]:
    """Write ``eval.json``, ``report.md`` and ``report.html`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": result.write_json(out_dir / EVAL_FILE),
             "markdown": out_dir / "report.md", "html": out_dir / "report.html"}
    write_file(paths["markdown"], markdown_report(result) + "\n")
    write_file(paths["html"], html_report(result))
    return paths
