"""The before/after summary printed at the end of ``losscraft run``: the base model and the run's
final model measured on held-back contexts by `losscraft.evaluation.evaluate` — the code behind
``losscraft eval`` — so the numbers here are eval's numbers, not a second implementation.

- **Risky block**: ``report.num_contexts`` contexts of ``report.contexts`` (default: ProsocialDialog
  test contexts labelled ``__probably_needs_caution__`` or worse), ``report.num_samples`` replies
  each: share of unsafe replies (P(unsafe) > ``report.threshold``), share of prosocial replies
  (only for a scorer with ``p_prosocial``), expected max P(unsafe), mean reply words; next to them
  the judge's own accuracy on its probe set when the scorer has ``probe_metrics()``.
- **Casual block** (only when ``report.casual_contexts`` is set): perplexity of the replies under
  the base model, Div-1/Div-2, mean reply words, unsafe share.
- Final vs base as a ratio (shares, probabilities) or a relative change (everything else).
- Negatives mined per stage, counted from the trainer's mining caches, and the contexts each stage
  replayed with its starting model's own replies (`[stages.replay]`).
- Example replies for contexts picked by `example_indices` (``report.examples_shown`` risky,
  ``report.casual_examples_shown`` casual): base and final are the first of the k replies already
  sampled for the numbers; final + rerank is the recipe reranker's pick among
  ``report.rerank_candidates`` fresh samples, through `evaluate` as ``losscraft eval --rerank``
  does (no RoTs are given: held-back contexts come without them at use).

Written to ``summary.json`` and ``summary.md`` in the run folder; every evaluation behind them is
also saved whole as ``summary/<block>-<model>.json`` (the ``eval.json`` format, readable by
``losscraft compare``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from losscraft.app.summary_cache import BaseMeasurements, base_measurements
from losscraft.errors import RecipeError
from losscraft.evaluation.bootstrap import Interval, paired_statistic_interval
from losscraft.evaluation.result import EvalResult
from losscraft.evaluation.run_eval import evaluate, judge_probe, metrics_of, rescore
from losscraft.generation.prompt_memo import PromptMemo
from losscraft.recipe.schema import ComponentSpec, Recipe, ReportSpec
from losscraft.recipe.instantiate import BuiltRecipe
from losscraft.runtime.device import resolve_device
from losscraft.runtime.safe_files import write_file
from losscraft.trainer.model_setup import load_saved
from losscraft.trainer.prepare.mining import mined_counts
from losscraft.trainer.prepare.replay import replayed_count

SCHEMA = "losscraft.summary/2"
#: folder (inside the run folder) of the evaluations behind the summary
EVAL_FOLDER = "summary"

#: rows of each block: (metric key of `EvalResult.metrics`, label, kind). Kind ``share`` and
#: ``prob`` compare final to base as a ratio (×0.28), the others as a relative change (+8%).
RISKY_ROWS = (("toxic_response_rate", "unsafe replies (P(unsafe)>{threshold})", "share"),
              ("prosocial_response_rate", "prosocial replies (P(prosocial)>{prosocial})", "share"),
              ("expected_max_toxicity", "expected max P(unsafe)", "prob"),
              ("mean_words", "mean reply words", "number"))
CASUAL_ROWS = (("perplexity", "reference perplexity (base LM)", "number"),
               ("div1", "Div-1", "div"),
               ("div2", "Div-2", "div"),
               ("mean_words", "mean reply words", "number"),
               ("toxic_response_rate", "unsafe replies (P(unsafe)>{threshold})", "share"))
PROBE_KEYS = (("accuracy", "accuracy"), ("unsafe_recall", "unsafe recall"),
              ("unsafe_precision", "unsafe precision"),
              ("prosocial_accuracy", "prosocial accuracy"))
MODELS = ("base", "final")


def example_indices(n: int, m: int) -> list[int]:
    """``m`` evenly spaced indices into a held-back list of ``n`` contexts: the middle of each of
    ``m`` equal slices, ``(2i + 1)·n // (2m)`` for ``i < m`` (every index when ``m >= n``).
    A fixed rule, so the examples are never picked by hand: n=40, m=3 gives [6, 20, 33]."""
    if m <= 0 or n <= 0:
        return []
    if m >= n:
        return list(range(n))
    return [(2 * i + 1) * n // (2 * m) for i in range(m)]


def change(base: float | None, final: float | None) -> dict[str, float | None]:
    """Final vs base: ``ratio`` (final / base) and ``relative`` ((final − base) / base); ``None``
    where a value is missing or base is 0."""
    if base is None or final is None or not math.isfinite(base) or base == 0:
        return {"ratio": None, "relative": None}
    return {"ratio": final / base, "relative": (final - base) / base}


def format_value(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "share":
        return f"{value:.1%}"
    if kind in ("prob", "div"):
        return f"{value:.3f}"
    return f"{value:.1f}"


class ResampledMetrics:
    """`metrics_of` of one evaluation on a resample of its contexts, computed once per resample:
    every row of a block draws the same resamples (the same seed), so one resample's metrics
    serve all of its rows (recomputed per row, they were most of a minute of the summary)."""

    def __init__(self, result: EvalResult):
        self.result = result
        self._found: dict[tuple[int, ...], dict[str, Any]] = {}

    def __call__(self, idx: list[int]) -> dict[str, Any]:
        key = tuple(idx)
        if key not in self._found:
            settings = self.result.settings
            self._found[key] = metrics_of(
                [self.result.samples[i] for i in idx], threshold=settings["threshold"],
                prosocial_threshold=settings.get("prosocial_threshold"))
        return self._found[key]


def change_interval(base: EvalResult | ResampledMetrics, final: EvalResult | ResampledMetrics,
                    key: str, kind: str, *, seed: int = 0) -> Interval | None:
    """Paired bootstrap 95% interval of the change of metric ``key`` (final vs base, on the
    scale `format_change` prints: a ratio for shares and probabilities, a relative change for the
    rest), resampling the block's contexts with the same draw for both models; each resample's
    metrics come from `metrics_of`, the code behind `evaluate` (pass `ResampledMetrics` to share
    them between the rows of a block)."""
    base, final = (m if isinstance(m, ResampledMetrics) else ResampledMetrics(m)
                   for m in (base, final))

    def statistic(idx: list[int]) -> float | None:
        found = change(base(idx).get(key), final(idx).get(key))
        return found["ratio"] if kind in ("share", "prob") else found["relative"]

    n = len(base.result.samples)
    if n != len(final.result.samples) or not n:
        return None
    return paired_statistic_interval(n, statistic, seed=seed)


def format_interval(interval: dict | None, kind: str) -> str:
    """``[0.15, 0.45]`` for ratios, ``[-12%, +3%]`` for relative changes; ``""`` without one."""
    if not interval:
        return ""
    low, high = interval["low"], interval["high"]
    if kind in ("share", "prob"):
        return f" [{low:.2f}, {high:.2f}]"
    return f" [{low:+.0%}, {high:+.0%}]"


def format_change(base: float | None, final: float | None, kind: str) -> str:
    """``×0.28`` for shares and probabilities, ``+8%`` for the rest (``+0.4%`` below 1%); ``=``
    when equal, ``from 0`` when base is 0, ``–`` when a value is missing."""
    if base is None or final is None:
        return "–"
    if final == base:
        return "="
    if base == 0 or not math.isfinite(base):
        return "from 0" if base == 0 else "–"
    found = change(base, final)
    if kind in ("share", "prob"):
        return f"×{found['ratio']:.2f}"
    relative = found["relative"]
    return f"{relative:+.1%}" if abs(relative) < 0.01 else f"{relative:+.0%}"


@dataclass
class Block:
    """One group of held-back contexts measured on both models."""

    name: str
    source: ComponentSpec
    requested: int
    contexts: list[list[str]]
    results: dict[str, EvalResult]
    rows: tuple
    shown: list[int]
    second: dict[str, EvalResult] | None = None   # the same replies scored by the second scorer

    def metric(self, model: str, key: str) -> float | None:
        return self.results[model].metrics.get(key)

    def present_rows(self) -> list[tuple[str, str, str]]:
        """Rows whose metric exists for the base model (prosocial only with ``p_prosocial``)."""
        return [row for row in self.rows if row[0] in self.results["base"].metrics]


def held_back_contexts(source: Iterable, limit: int) -> list[list[str]]:
    """The first ``limit`` distinct histories of data source ``source`` whose last turn is not
    empty (a duplicate history would count twice in every share)."""
    seen: dict[tuple[str, ...], None] = {}
    for example in source:
        history = tuple(str(t) for t in example.history)
        if history and history[-1].strip():
            seen.setdefault(history, None)
        if len(seen) >= limit:
            break
    return [list(h) for h in seen]


def measure(name: str, contexts: list[list[str]], models: dict[str, Any], scorer,
            spec: ReportSpec, seed: int, *, reference=None, progress: bool = True,
            settings_extra: dict[str, Any] | None = None, memo: PromptMemo | None = None,
            cache: BaseMeasurements | None = None) -> dict[str, EvalResult]:
    """`evaluate` each of ``models`` (label -> `LoadedModel`) on ``contexts`` with the report's
    sampling settings; the same seed for every model. ``memo``: a `PromptMemo` shared by the
    evaluations (the base model reads the contexts once for all of them). ``cache``: where the
    ``base`` model's evaluation is read from, or kept for the next run."""
    results = {}
    for label, loaded in models.items():
        target = str(loaded.source or label)

        def run(loaded=loaded, label=label, target=target) -> EvalResult:
            return evaluate(loaded.model, loaded.tokenizer, contexts, scorer=scorer,
                            k=spec.num_samples, threshold=spec.threshold,
                            max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                            top_p=spec.top_p, seed=seed, batch_size=spec.batch_size,
                            reference=reference, progress=progress, model_label=label,
                            dataset_label=f"summary:{name}", target=target,
                            settings_extra=settings_extra, prompt_memo=memo)
        if label == "base" and cache is not None:
            parts = cache.parts(name, contexts, spec, seed, perplexity=reference is not None,
                                settings_extra=settings_extra or {}, target=target)
            results[label] = cache.evaluation(parts, run)
        else:
            results[label] = run()
    return results


def rescore_all(name: str, contexts: list[list[str]], results: dict[str, EvalResult],
                second_scorer, label: str, spec: ReportSpec, seed: int, *,
                reference_is_base: bool, settings_extra: dict[str, Any],
                cache: BaseMeasurements | None = None) -> dict[str, EvalResult]:
    """`rescore` of every model's evaluation by ``second_scorer`` (the base model's through
    ``cache`` when given, keyed like its evaluation in `measure`)."""
    out = {}
    for model, found in results.items():
        def run(found=found) -> EvalResult:
            return rescore(found, second_scorer, label=label)
        if model == "base" and cache is not None:
            parts = cache.parts(name, contexts, spec, seed, perplexity=reference_is_base,
                                settings_extra=settings_extra, target=found.target)
            out[model] = cache.rescored({**parts, "second_label": label}, second_scorer, run)
        else:
            out[model] = run()
    return out


def mining_summary(recipe: Recipe, run_dir: Path) -> dict[str, dict[str, int]]:
    """`mined_counts` of the run, plus how many replies each mining stage sampled
    (``sampled``: mined contexts × ``mining.num_samples``, from the recipe)."""
    counts = mined_counts(run_dir, [s.name for s in recipe.stages])
    for stage in recipe.stages:
        if stage.name in counts and stage.mining is not None:
            found = counts[stage.name]
            contexts = found["examples"]
            if stage.mining.max_examples:
                contexts = min(contexts, stage.mining.max_examples)
            found["sampled"] = contexts * stage.mining.num_samples
    return counts


def print_run_summary(built: BuiltRecipe, result, *, console: Console,
                      show_progress: bool = True) -> dict:
    """Measure the base model and the run's final model, print the summary and write
    ``summary.json`` / ``summary.md`` (and the evaluations behind them) into the run folder.
    ``built``: the recipe as `build_recipe` built it for the run — its ``report`` holds the
    scorers, context sources and reranker that `losscraft validate` checked. Returns what
    ``summary.json`` holds."""
    recipe, report = built.recipe, built.report
    if report is None:
        raise RecipeError("the recipe's [report] is disabled: there is no summary to print",
                          file=recipe.path, key="report.enabled")
    spec = recipe.report
    seed = recipe.run.seed
    out = Path(result.output_dir)
    scorer_spec, scorer, second_scorer = report.scorer_spec, report.scorer, report.second_scorer
    sources = [("risky", *report.contexts["risky"], spec.num_contexts, RISKY_ROWS,
                spec.examples_shown)]
    if "casual" in report.contexts:
        sources.append(("casual", *report.contexts["casual"], spec.num_casual_contexts,
                        CASUAL_ROWS, spec.casual_examples_shown))
    contexts = {name: held_back_contexts(source, n) for name, _, source, n, _, _ in sources}
    for name, src, _, _, _, _ in sources:
        if not contexts[name]:
            raise RecipeError(f"data source '{src.plugin}' gave no contexts for the summary",
                              file=recipe.path, key=src.key or "report.contexts")
    console.print(f"[bold]summary[/]: base vs final, {spec.num_samples} samples per context, "
                  f"scorer {scorer_spec.plugin}", highlight=False)
    device = resolve_device(recipe.run.device)
    base = built.model.load(device=device)
    final = load_saved(result.final_model, device)
    models = {"base": base, "final": final}
    cache = base_measurements(base, scorer, device)
    blocks = []
    for name, src, _, requested, rows, shown in sources:
        extra = {"scorer": scorer_spec.plugin, "scorer_params": scorer_spec.params,
                 "source": src.plugin, "source_params": src.params}
        reference = None
        if name == "casual":  # perplexity of the replies under the base model
            reference = (base.model, base.tokenizer)
            extra["reference"] = f"base model ({recipe.model.plugin})"
        results = measure(name, contexts[name], models, scorer, spec, seed, reference=reference,
                          progress=show_progress, settings_extra=extra,
                          memo=PromptMemo(base.model), cache=cache)
        rescored = None if second_scorer is None else rescore_all(
            name, contexts[name], results, second_scorer, spec.second_scorer.plugin, spec, seed,
            reference_is_base=reference is not None, settings_extra=extra, cache=cache)
        blocks.append(Block(name, src, requested, contexts[name], results, rows,
                            example_indices(len(contexts[name]), shown), rescored))
    if cache is not None and cache.reused:
        console.print(Text(f"base model: replies, scores and perplexities of "
                           f"{', '.join(dict.fromkeys(cache.reused))} read from the cache of an "
                           "earlier run with the same key (LOSSCRAFT_EVAL_CACHE=0 recomputes)",
                           style="dim"))
    examples = _examples(blocks)
    if report.reranker is not None and examples:
        reranker = report.reranker
        if hasattr(reranker, "bind"):
            reranker.bind(base.model, base.tokenizer)  # fluency under the base (reference) LM
        reranked = evaluate(final.model, final.tokenizer, [e["context"] for e in examples],
                            scorer=scorer, k=1, threshold=spec.threshold, reranker=reranker,
                            rerank_candidates=spec.rerank_candidates,
                            max_new_tokens=spec.max_new_tokens, temperature=spec.temperature,
                            top_p=spec.top_p, seed=seed, batch_size=spec.batch_size,
                            progress=show_progress, model_label="final+rerank",
                            dataset_label="summary:examples", target=str(final.source),
                            settings_extra={"scorer": scorer_spec.plugin,
                                            "reranker": recipe.reranker.plugin})
        for example, sample in zip(examples, reranked.samples):
            example["final_rerank"] = _reply(sample.responses[0])
        files = {"examples-final+rerank": str(
            reranked.write_json(out / EVAL_FOLDER / "examples-final+rerank.json"))}
    else:
        files = {}
    for block in blocks:
        for suffix, results in (("", block.results), ("-second_scorer", block.second or {})):
            for label, found in results.items():
                name = f"{block.name}-{label}{suffix}"
                files[name] = str(found.write_json(out / EVAL_FOLDER / f"{name}.json"))
    record = _record(recipe, spec, scorer_spec, judge_probe(scorer), blocks, examples,
                     mining_summary(recipe, out), files)
    record["replay"] = replay_summary(recipe, out)
    record["second_judge"] = judge_probe(second_scorer) if second_scorer is not None else None
    _print(console, record, blocks)
    write_file(out / "summary.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    write_file(out / "summary.md", _markdown(record, blocks))
    return record


def _reply(response) -> dict[str, Any]:
    reply = {"text": response.text, "p_unsafe": response.p_unsafe}
    if response.p_prosocial is not None:
        reply["p_prosocial"] = response.p_prosocial
    return reply


def _examples(blocks: list[Block]) -> list[dict[str, Any]]:
    """The example contexts of every block (`example_indices`) with the first sampled reply of
    each model."""
    examples = []
    for block in blocks:
        for i in block.shown:
            examples.append({"block": block.name, "index": i, "context": block.contexts[i],
                             **{label: _reply(block.results[label].samples[i].responses[0])
                                for label in MODELS},
                             "final_rerank": None})
    return examples


def _labels(spec: ReportSpec, block: Block) -> list[tuple[str, str, str]]:
    prosocial = block.results["base"].settings.get("prosocial_threshold", 0.5)
    return [(key, label.format(threshold=spec.threshold, prosocial=prosocial), kind)
            for key, label, kind in block.present_rows()]


def _record(recipe, spec, scorer_spec, probe, blocks, examples, mining, files) -> dict:
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "settings": {"num_samples": spec.num_samples, "threshold": spec.threshold,
                     "max_new_tokens": spec.max_new_tokens, "temperature": spec.temperature,
                     "top_p": spec.top_p, "seed": recipe.run.seed,
                     "scorer": scorer_spec.plugin, "scorer_params": scorer_spec.params,
                     "reranker": recipe.reranker.plugin if recipe.reranker and spec.rerank
                     else None, "rerank_candidates": spec.rerank_candidates,
                     "example_rule": "evenly spaced: index (2i+1)*n // (2m), i < m"},
        "judge": probe,
        "mining": mining,
        "examples": examples,
        "files": files,
    }
    second = recipe.report.second_scorer
    record["settings"]["second_scorer"] = None if second is None else \
        {"plugin": second.plugin, "params": second.params}
    for block in blocks:
        record[block.name] = {
            "source": {"plugin": block.source.plugin, "params": block.source.params},
            "num_contexts": len(block.contexts), "requested_contexts": block.requested,
            "contexts_sha256": block.results["base"].contexts_sha256,
            "rows": _rows(block, spec, second and second.plugin + _params(second.params),
                          recipe.run.seed),
            "models": {label: {"metrics": found.metrics, "timings": found.info.get("timings")}
                       for label, found in block.results.items()},
            "contexts": block.contexts,
        }
    record.setdefault("casual", None)
    return record


#: the rows the second scorer adds to a block (its verdicts on the same replies)
SECOND_SCORER_KEYS = ("toxic_response_rate", "prosocial_response_rate")


def _rows(block: Block, spec: ReportSpec, second_name: str | None, seed: int) -> list[dict]:
    memo = {label: ResampledMetrics(found) for label, found in block.results.items()}
    rows = [_row(block.results, memo, key, label, kind, seed)
            for key, label, kind in _labels(spec, block)]
    if block.second:
        memo = {label: ResampledMetrics(found) for label, found in block.second.items()}
        rows += [{**_row(block.second, memo, key, f"{label} — {second_name}", kind, seed),
                  "scorer": "second"}
                 for key, label, kind in _labels(spec, block)
                 if key in SECOND_SCORER_KEYS and key in block.second["base"].metrics]
    return rows


def _row(results: dict[str, EvalResult], memo: dict[str, ResampledMetrics], key: str, label: str,
         kind: str, seed: int) -> dict[str, Any]:
    base, final = results["base"].metrics.get(key), results["final"].metrics.get(key)
    interval = change_interval(memo["base"], memo["final"], key, kind, seed=seed)
    return {"metric": key, "label": label, "kind": kind, "base": base, "final": final,
            **change(base, final),
            "interval": None if interval is None else
            {"low": interval.low, "high": interval.high, "confidence": 0.95,
             "scale": "ratio" if kind in ("share", "prob") else "relative",
             "contexts": interval.n}}


def _block_title(block: Block, k: int) -> str:
    short = "" if len(block.contexts) >= block.requested else \
        f"; {block.requested} asked, the source has no more"
    return (f"before / after — {block.name}: {len(block.contexts)} held-back contexts "
            f"({block.source.plugin}{_params(block.source.params)}), k={k}{short}; intervals: "
            f"paired bootstrap over the {len(block.contexts)} contexts")


def _params(params: dict) -> str:
    return f" {', '.join(f'{k}={v}' for k, v in params.items())}" if params else ""


def probe_line(probe: dict | None) -> str | None:
    """``judge probe accuracy 0.91, unsafe recall 0.88 on 232 pairs`` (``None`` without one)."""
    if not probe:
        return None
    parts = [f"{label} {probe[key]:.2f}" for key, label in PROBE_KEYS
             if isinstance(probe.get(key), (int, float))]
    if not parts:
        return None
    pairs = f" on {probe['n']} pairs" if "n" in probe else ""
    return f"judge probe {', '.join(parts)}{pairs}"


def replay_summary(recipe: Recipe, run_dir: Path) -> dict[str, int]:
    """Per stage with ``[stages.replay]``: how many contexts it trained on the starting model's
    own replies (from the stage's replay cache)."""
    return {stage.name: replayed_count(run_dir, stage.name) for stage in recipe.stages
            if stage.replay is not None and stage.replay.enabled}


def mining_line(mining: dict[str, dict[str, int]]) -> str:
    if not mining:
        return "mined negatives: none (no stage mines)"
    parts = []
    for stage, c in mining.items():
        sampled = f" of {c['sampled']} samples" if "sampled" in c else ""
        parts.append(f"{stage} {c['negatives']}{sampled} "
                     f"({c['contexts_with_negatives']}/{c['examples']} contexts)")
    return "mined negatives: " + "; ".join(parts)


def _print(console: Console, record: dict, blocks: list[Block]) -> None:
    k = record["settings"]["num_samples"]
    for block in blocks:
        console.print(Text(_block_title(block, k), style="bold"))
        table = Table()
        for col, justify in (("metric", "left"), ("base", "right"), ("final", "right"),
                             ("final vs base [95% CI]", "right")):
            table.add_column(col, justify=justify)
        for row in record[block.name]["rows"]:
            kind = row["kind"]
            table.add_row(row["label"], format_value(row["base"], kind),
                          format_value(row["final"], kind),
                          format_change(row["base"], row["final"], kind)
                          + format_interval(row.get("interval"), kind))
        console.print(table)
        if block.name == "risky":
            line = probe_line(record["judge"])
            console.print(Text(line or f"judge: {record['settings']['scorer']} has no probe "
                               "metrics (its verdicts are unmeasured)", style="dim"))
            second = probe_line(record.get("second_judge"))
            if second:
                console.print(Text("second " + second, style="dim"))
    console.print(Text(mining_line(record["mining"])))
    if record.get("replay"):
        console.print(Text("replayed own replies: " + "; ".join(
            f"{stage} {n} contexts" for stage, n in record["replay"].items())))
    for example in record["examples"]:
        console.print(Text.assemble(("context", "bold"), f" ({example['block']} "
                                    f"#{example['index']}): {_one_line(example['context'][-1])}"))
        for label, key in (("base", "base"), ("final", "final"), ("final+rerank", "final_rerank")):
            if example[key] is not None:
                console.print(Text(f"  {label:<12} {_one_line(example[key]['text'])}"))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _md_cell(text: str) -> str:
    return _one_line(text).replace("|", "\\|")


def _markdown(record: dict, blocks: list[Block]) -> str:
    s = record["settings"]
    lines = ["# Before / after", "",
             f"Base vs final model, {s['num_samples']} samples per held-back context "
             f"(temperature {s['temperature']}, top-p {s['top_p']}, seed {s['seed']}), scorer "
             f"`{s['scorer']}`; measured by `losscraft.evaluation.evaluate` (the evaluations "
             f"behind every number are in `{EVAL_FOLDER}/`).", ""]
    for block in blocks:
        lines += [f"## {_block_title(block, s['num_samples']).split(' — ', 1)[1]}", "",
                  "| metric | base | final | final vs base [95% CI] |", "|---|---|---|---|"]
        for row in record[block.name]["rows"]:
            kind = row["kind"]
            lines.append(f"| {row['label']} | {format_value(row['base'], kind)} | "
                         f"{format_value(row['final'], kind)} | "
                         f"{format_change(row['base'], row['final'], kind)}"
                         f"{format_interval(row.get('interval'), kind)} |")
        lines.append("")
        if block.name == "risky":
            second = probe_line(record.get("second_judge"))
            lines += [probe_line(record["judge"]) or f"Judge: `{s['scorer']}` has no probe "
                      "metrics (its verdicts are unmeasured).", ""]
            lines += [f"Second {second}.", ""] if second else []
    lines += ["## Mined negatives", ""]
    if record["mining"]:
        lines += ["| stage | negatives | sampled | contexts with negatives | examples |",
                  "|---|---|---|---|---|"]
        lines += [f"| {stage} | {c['negatives']} | {c.get('sampled', '–')} | "
                  f"{c['contexts_with_negatives']} | {c['examples']} |"
                  for stage, c in record["mining"].items()]
    else:
        lines.append("No stage mines negatives.")
    if record.get("replay"):
        lines += ["", "Contexts trained on the starting model's own replies (`[stages.replay]`): "
                  + ", ".join(f"{stage} {n}" for stage, n in record["replay"].items()) + "."]
    lines += ["", "## Examples", "", f"Contexts chosen by a fixed rule ({s['example_rule']}).", ""]
    for example in record["examples"]:
        lines.append(f"**{example['block']} #{example['index']}:**")
        lines += [f"> {_md_cell(turn)}  " for turn in example["context"]]
        lines.append("")
        for label, key in (("base", "base"), ("final", "final"),
                           ("final + rerank", "final_rerank")):
            if example[key] is not None:
                lines.append(f"- {label} (P(unsafe) {example[key]['p_unsafe']:.2f}): "
                             f"{_md_cell(example[key]['text']) or '*(empty)*'}")
        lines.append("")
    return "\n".join(lines)
