"""The before/after summary of ``losscraft run`` (losscraft.app.summary) on tiny models: its numbers
are `evaluate`'s numbers, prosociality appears only for a scorer that has ``p_prosocial``, the
casual block is optional, examples follow a fixed rule, mined negatives are counted from the
trainer's caches, and the [report] table parses with its defaults."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from conftest import tiny_toml
from losscraft.plugins.protocols import RankedCandidate
from losscraft.trainer.prepare.mining import mined_counts
from losscraft.errors import RecipeError
from losscraft.evaluation import evaluate
from losscraft.app.reports.eval_report import html_report, markdown_report
from losscraft.evaluation.result import EvalResult
from losscraft.plugins.hookspecs import hookimpl
from losscraft.recipe import build_recipe, load_recipe
from losscraft.recipe.schema import ReportSpec, default_report_contexts
from losscraft.app.summary import example_indices, format_change, print_run_summary
from losscraft.runtime.manifest import write_manifest
from losscraft.trainer.loop import RunResult
from losscraft.trainer.model_setup import load_saved

PROBE = {"accuracy": 0.91, "unsafe_recall": 0.88, "unsafe_precision": 0.8,
         "prosocial_accuracy": 0.75, "n": 232, "n_unsafe": 60}


class LengthScorer:
    """P(unsafe) from the reply's length: no prosociality, no probe."""

    def p_unsafe(self, contexts, responses):
        assert len(contexts) == len(responses)
        return [min(1.0, len(r) / 40) for r in responses]


class FakeJudge(LengthScorer):
    """Adds P(prosocial) (share of vowels, stretched) and probe metrics."""

    def p_prosocial(self, contexts, responses):
        return [min(1.0, 3 * sum(c in "aeiou" for c in r) / max(len(r), 1)) for r in responses]

    def probe_metrics(self):
        return dict(PROBE)


class FirstReranker:
    """Keeps the candidates' order (the first sample wins)."""

    def rerank(self, history, candidates, *, rots=None):
        return [RankedCandidate(t, float(-i), {"order": float(i)})
                for i, t in enumerate(candidates)]


class SummaryStubs:
    @hookimpl
    def register_scorers(self, register):
        register("test_length", LengthScorer)
        register("test_judge", FakeJudge)

    @hookimpl
    def register_rerankers(self, register):
        register("test_first", FirstReranker)


@pytest.fixture
def stubs(registry):
    registry.add_plugin(SummaryStubs(), "summary_stubs")
    return registry


def _recipe(tmp_path, *, scorer="test_judge", casual=True, extra=None):
    """The tiny recipe with ``[scorer]`` ``scorer``, a first-candidate reranker and a small
    ``[report]`` (casual contexts when ``casual``; ``extra``: more report keys)."""
    report = {"contexts": {"plugin": "toy_dialogs", "count": 6}, "num_contexts": 5,
              "num_samples": 2, "max_new_tokens": 5, "examples_shown": 3,
              "casual_examples_shown": 2, "rerank_candidates": 2}
    if casual:
        report |= {"casual_contexts": {"plugin": "daily_dialog", "split": "test"},
                   "num_casual_contexts": 3}
    report |= extra or {}
    path = tmp_path / "recipe.toml"
    path.write_text(tiny_toml(tmp_path / "run", scorer={"plugin": scorer},
                              reranker={"plugin": "test_first"}, report=report))
    return load_recipe(path)


def _run_folder(tmp_path, registry):
    """A finished run: a final model (tiny, other seed) and a mining cache for stage 'main'."""
    out = tmp_path / "run"
    loaded = registry.create("model", "tiny", {"seed": 7}).load(device="cpu")
    loaded.model.save_pretrained(out / "final")
    loaded.tokenizer.save_pretrained(out / "final")
    write_manifest(out / "final")  # every model folder a run writes carries one
    cache = out / "stages" / "main" / "mined_negatives.jsonl"
    cache.parent.mkdir(parents=True)
    rows = [{"settings": "abc"}, {"id": "a", "flagged": [{"text": "x", "p_unsafe": 0.9}] * 2},
            {"id": "b", "flagged": []}, {"id": "c", "flagged": [{"text": "y", "p_unsafe": 0.7}]}]
    cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return RunResult(output_dir=out, final_model=out / "final")


def _summary(recipe, result, registry):
    buffer = io.StringIO()
    record = print_run_summary(build_recipe(recipe, registry), result,
                               console=Console(file=buffer, width=200), show_progress=False)
    return record, buffer.getvalue()


def test_summary_numbers_are_evaluates_numbers(tmp_path, stubs):
    recipe = _recipe(tmp_path)
    result = _run_folder(tmp_path, stubs)
    record, printed = _summary(recipe, result, stubs)

    spec = recipe.report
    base = stubs.create("model", "tiny", {}).load(device="cpu")
    final = load_saved(result.final_model, "cpu")
    options = dict(scorer=FakeJudge(), k=2, threshold=spec.threshold, max_new_tokens=5,
                   temperature=spec.temperature, top_p=spec.top_p, seed=recipe.run.seed,
                   batch_size=spec.batch_size, progress=False)
    risky = [e.history for e in stubs.create("data_source", "toy_dialogs", {"count": 6})][:5]
    casual = []
    for e in stubs.create("data_source", "daily_dialog", {"split": "test"}):
        if e.history not in casual:
            casual.append(e.history)
    casual = casual[:3]
    assert record["risky"]["contexts"] == risky and record["casual"]["contexts"] == casual
    for label, loaded in (("base", base), ("final", final)):
        expected = evaluate(loaded.model, loaded.tokenizer, risky, **options)
        assert record["risky"]["models"][label]["metrics"] == expected.metrics
        expected_casual = evaluate(loaded.model, loaded.tokenizer, casual,
                                   reference=(base.model, base.tokenizer), **options)
        assert record["casual"]["models"][label]["metrics"] == expected_casual.metrics
        assert expected_casual.metrics["perplexity"] > 1.0
        saved = EvalResult.read_json(tmp_path / "run" / "summary" / f"risky-{label}.json")
        assert saved.metrics == expected.metrics
        assert [[r.text for r in s.responses] for s in saved.samples] == \
            [[r.text for r in s.responses] for s in expected.samples]

    rows = {r["metric"]: r for r in record["risky"]["rows"]}
    assert list(rows) == ["toxic_response_rate", "prosocial_response_rate",
                          "expected_max_toxicity", "mean_words"]
    metrics = record["risky"]["models"]
    for key, row in rows.items():
        assert row["base"] == metrics["base"]["metrics"][key]
        assert row["final"] == metrics["final"]["metrics"][key]
    assert [r["metric"] for r in record["casual"]["rows"]] == [
        "perplexity", "div1", "div2", "mean_words", "toxic_response_rate"]
    assert record["judge"] == PROBE
    assert "judge probe accuracy 0.91, unsafe recall 0.88, unsafe precision 0.80, prosocial " \
           "accuracy 0.75 on 232 pairs" in printed
    assert "before / after — risky" in printed and "before / after — casual" in printed
    assert record["mining"] == {"main": {"examples": 3, "contexts_with_negatives": 2,
                                         "negatives": 3}}
    assert "mined negatives: main 3 (2/3 contexts)" in printed

    # examples: 3 risky + 2 casual, evenly spaced, with the first sample of each model and the
    # reranked reply of the final model
    assert [(e["block"], e["index"]) for e in record["examples"]] == [
        ("risky", 0), ("risky", 2), ("risky", 4), ("casual", 0), ("casual", 2)]
    second = record["examples"][1]
    assert second["context"] == risky[2]
    base_eval = EvalResult.read_json(tmp_path / "run" / "summary" / "risky-base.json")
    assert second["base"]["text"] == base_eval.samples[2].responses[0].text
    assert "p_prosocial" in second["base"]
    assert all(e["final_rerank"] is not None for e in record["examples"])

    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written == json.loads(json.dumps(record))
    markdown = (tmp_path / "run" / "summary.md").read_text()
    assert "| prosocial replies (P(prosocial)>0.5) |" in markdown
    assert "judge probe accuracy 0.91" in markdown and "| main | 3 |" in markdown


def test_every_change_has_a_paired_interval_and_the_second_scorer_rows(tmp_path, stubs):
    from losscraft.evaluation.bootstrap import paired_statistic_interval
    from losscraft.evaluation.run_eval import metrics_of

    recipe = _recipe(tmp_path, casual=False,
                     extra={"second_scorer": {"plugin": "test_length"}})
    record, printed = _summary(recipe, _run_folder(tmp_path, stubs), stubs)
    rows = record["risky"]["rows"]
    main = [r for r in rows if "scorer" not in r]
    second = [r for r in rows if r.get("scorer") == "second"]
    assert [r["metric"] for r in second] == ["toxic_response_rate"]  # no p_prosocial
    assert second[0]["label"].endswith("— test_length")
    base = EvalResult.read_json(tmp_path / "run" / "summary" / "risky-base.json")
    final = EvalResult.read_json(tmp_path / "run" / "summary" / "risky-final.json")
    row = next(r for r in main if r["metric"] == "mean_words")

    def relative(idx):  # recomputed here from the saved samples, the same resampling seed
        b = metrics_of([base.samples[i] for i in idx], threshold=0.5)["mean_words"]
        f = metrics_of([final.samples[i] for i in idx], threshold=0.5)["mean_words"]
        return (f - b) / b

    expected = paired_statistic_interval(len(base.samples), relative, seed=recipe.run.seed)
    assert row["interval"]["low"] == pytest.approx(expected.low)
    assert row["interval"]["high"] == pytest.approx(expected.high)
    assert row["interval"]["contexts"] == 5 and row["interval"]["scale"] == "relative"
    assert row["interval"]["low"] <= row["relative"] <= row["interval"]["high"]
    assert "[95% CI]" in printed and "paired bootstrap over the 5 contexts" in printed
    rescored = EvalResult.read_json(tmp_path / "run" / "summary" /
                                    "risky-final-second_scorer.json")
    assert [r.text for s in rescored.samples for r in s.responses] == \
        [r.text for s in final.samples for r in s.responses]
    assert rescored.metrics["toxic_response_rate"] == second[0]["final"]


def test_prosocial_share_only_with_p_prosocial_and_casual_block_optional(tmp_path, stubs):
    recipe = _recipe(tmp_path, scorer="test_length", casual=False)
    record, printed = _summary(recipe, _run_folder(tmp_path, stubs), stubs)
    assert record["casual"] is None and "casual" not in printed
    assert [r["metric"] for r in record["risky"]["rows"]] == [
        "toxic_response_rate", "expected_max_toxicity", "mean_words"]
    for model in record["risky"]["models"].values():
        assert "prosocial_response_rate" not in model["metrics"]
    assert "prosocial" not in printed
    assert record["judge"] is None and "has no probe metrics" in printed
    assert [e["block"] for e in record["examples"]] == ["risky"] * 3
    assert set(record["files"]) == {"risky-base", "risky-final", "examples-final+rerank"}


def test_summary_without_reranker_and_with_default_contexts(tmp_path, stubs):
    recipe = _recipe(tmp_path, scorer="test_length", casual=False)
    recipe.reranker = None
    recipe.report.contexts = None
    recipe.report.num_contexts = 2
    record, _ = _summary(recipe, _run_folder(tmp_path, stubs), stubs)
    default = default_report_contexts()
    assert record["risky"]["source"] == {"plugin": default.plugin, "params": default.params}
    assert record["risky"]["num_contexts"] == 2
    assert all(e["final_rerank"] is None for e in record["examples"])


def test_example_indices_are_evenly_spaced_and_deterministic():
    assert example_indices(40, 3) == [6, 20, 33]
    assert example_indices(24, 2) == [6, 18]
    assert example_indices(5, 3) == [0, 2, 4]
    assert example_indices(2, 3) == [0, 1]
    assert example_indices(0, 3) == [] and example_indices(10, 0) == []
    for n in range(1, 30):
        for m in range(1, 6):
            found = example_indices(n, m)
            assert found == example_indices(n, m)
            assert found == sorted(set(found)) and len(found) == min(n, m)
            assert all(0 <= i < n for i in found)


def test_format_change():
    assert format_change(0.225, 0.063, "share") == "×0.28"
    assert format_change(18.1, 19.5, "number") == "+8%"
    assert format_change(0.0, 0.1, "share") == "from 0"
    assert format_change(0.0, 0.0, "share") == "="
    assert format_change(None, 1.0, "number") == "–"


def test_mined_counts_reads_stage_caches(tmp_path):
    for stage, flagged in (("one", [1, 0, 2]), ("two", [0, 0])):
        cache = tmp_path / "stages" / stage / "mined_negatives.jsonl"
        cache.parent.mkdir(parents=True)
        rows = [{"settings": "k"}] + [{"id": str(i), "flagged": [{"text": "t"}] * n}
                                      for i, n in enumerate(flagged)]
        cache.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "stages" / "three").mkdir()
    assert mined_counts(tmp_path) == {
        "one": {"examples": 3, "contexts_with_negatives": 2, "negatives": 3},
        "two": {"examples": 2, "contexts_with_negatives": 0, "negatives": 0}}
    assert list(mined_counts(tmp_path, ["two", "three", "one"])) == ["two", "one"]


def test_eval_reports_show_prosociality_and_judge_only_when_known(tmp_path, tok_tiny):
    from losscraft.models.tiny import tiny_model

    model = tiny_model(len(tok_tiny), seed=1)
    plain = evaluate(model, tok_tiny, [["hi"]], scorer=LengthScorer(), k=2, max_new_tokens=4,
                     progress=False)
    judged = evaluate(model, tok_tiny, [["hi"]], scorer=FakeJudge(), k=2, max_new_tokens=4,
                      progress=False)
    assert "prosocial_response_rate" not in plain.metrics and "judge_probe" not in plain.info
    assert judged.info["judge_probe"] == PROBE
    p = [r.p_prosocial for r in judged.samples[0].responses]
    assert p == FakeJudge().p_prosocial(None, [r.text for r in judged.samples[0].responses])
    assert judged.metrics["prosocial_response_rate"] == sum(x > 0.5 for x in p) / 2
    assert judged.metrics["mean_words"] == plain.metrics["mean_words"]
    assert "Prosocial replies" not in markdown_report(plain) and "Judge" not in html_report(plain)
    md, page = markdown_report(judged), html_report(judged)
    assert "| Prosocial replies (share) |" in md and "| unsafe recall | 0.8800 |" in md
    assert "P(prosocial)" in md and "<h2>Judge</h2>" in page and "P(prosocial)" in page
    # an eval.json with P(prosocial) reads back
    back = EvalResult.read_json(judged.write_json(tmp_path / "eval.json"))
    assert back.samples[0].responses[0].p_prosocial == p[0]


@pytest.fixture(scope="module")
def tok_tiny():
    from losscraft.models.tiny import tiny_tokenizer
    return tiny_tokenizer()


def test_report_table_defaults_and_checks(tmp_path):
    assert ReportSpec().num_contexts == 40 and ReportSpec().casual_contexts is None
    recipe = _recipe(tmp_path)
    spec = recipe.report
    assert spec.casual_contexts.plugin == "daily_dialog"
    assert spec.casual_contexts.params == {"split": "test"}
    assert spec.casual_contexts.key == "report.casual_contexts"
    assert spec.num_casual_contexts == 3 and spec.threshold == 0.5 and spec.rerank_candidates == 2
    path = tmp_path / "recipe.toml"
    for override, key in (("report.num_samples=0", "report.num_samples"),
                          ("report.threshold=1.5", "report.threshold"),
                          ("report.casual_contexts=3", "report.casual_contexts"),
                          ("report.num_casual=3", "report.num_casual")):
        with pytest.raises(RecipeError) as info:
            load_recipe(path, [override])
        assert info.value.key == key, str(info.value)


def test_resampled_metrics_are_computed_once_per_resample(monkeypatch):
    from losscraft.app import summary
    from losscraft.evaluation.result import ContextSamples, SampledResponse

    samples = [ContextSamples([f"c{i}"], [SampledResponse(text="a b " * i, p_unsafe=i / 4)])
               for i in range(4)]
    result = EvalResult(model="m", dataset="d", target="t", contexts_sha256="", metrics={},
                        settings={"threshold": 0.5}, samples=samples)
    calls = []
    real = summary.metrics_of
    monkeypatch.setattr(summary, "metrics_of", lambda s, **kw: calls.append(1) or real(s, **kw))
    memo = summary.ResampledMetrics(result)
    first = memo([3, 3, 0])
    assert first == real([samples[3], samples[3], samples[0]], threshold=0.5)
    assert memo([3, 3, 0]) is first and len(calls) == 1  # a second row reads the same resample
    assert memo([1, 2, 3])["toxic_response_rate"] == pytest.approx(1 / 3) and len(calls) == 2


# ------------------------------------------------------------ the base model's cache across runs
def _counting_evaluate(monkeypatch):
    """Patch the summary's `evaluate` to record the label of every model it evaluates."""
    import losscraft.app.summary as summary

    calls = []

    def counting(*args, **kwargs):
        calls.append(kwargs["model_label"])
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(summary, "evaluate", counting)
    return calls


def _cached_summary(tmp_path, stubs, monkeypatch, name, *, extra=None, recipe_edit=None):
    """A summary of the tiny run in folder ``name`` with the evaluation cache on; returns the
    record, what was printed and the labels `evaluate` ran."""
    monkeypatch.setenv("LOSSCRAFT_EVAL_CACHE", "1")
    monkeypatch.setenv("LOSSCRAFT_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    recipe = _recipe(folder, extra={"second_scorer": {"plugin": "test_length"}, **(extra or {})})
    if recipe_edit is not None:
        recipe_edit(recipe)
    calls = _counting_evaluate(monkeypatch)
    record, printed = _summary(recipe, _run_folder(folder, stubs), stubs)
    return record, printed, calls


def _numbers(record):
    return {block: (record[block]["rows"], record[block]["models"]["base"]["metrics"])
            for block in ("risky", "casual")}


def test_base_measurements_are_reused_by_the_next_run(tmp_path, stubs, monkeypatch):
    first, printed, calls = _cached_summary(tmp_path, stubs, monkeypatch, "a")
    assert calls.count("base") == 2 and "read from the cache" not in printed
    entries = list((tmp_path / "cache" / "eval-cache").glob("*/eval.json"))
    assert len(entries) == 4  # risky and casual, each evaluated and rescored by the second judge

    second, printed, calls = _cached_summary(tmp_path, stubs, monkeypatch, "b")
    assert "base" not in calls and calls.count("final") == 2  # the final model is measured
    assert "base model: replies, scores and perplexities of risky, casual read from the cache" \
        in printed
    assert _numbers(second) == _numbers(first)  # the same summary, rows and intervals included
    assert second["examples"] == first["examples"]
    for name in ("risky-base", "casual-base", "risky-base-second_scorer"):
        a = EvalResult.read_json(tmp_path / "a" / "run" / "summary" / f"{name}.json")
        b = EvalResult.read_json(tmp_path / "b" / "run" / "summary" / f"{name}.json")
        assert a.samples == b.samples and a.metrics == b.metrics


@pytest.mark.parametrize("change", ["contexts", "model", "max_new_tokens", "temperature", "seed",
                                    "scorer"])
def test_base_measurements_are_recomputed_when_what_decides_them_changes(
        tmp_path, stubs, monkeypatch, change):
    _cached_summary(tmp_path, stubs, monkeypatch, "a")
    edits = {
        "contexts": lambda r: setattr(r.report, "num_contexts", 4),
        "model": lambda r: setattr(r.model, "params", {**r.model.params, "seed": 1}),
        "max_new_tokens": lambda r: setattr(r.report, "max_new_tokens", 4),
        "temperature": lambda r: setattr(r.report, "temperature", 0.7),
        "seed": lambda r: setattr(r.run, "seed", 5),
        "scorer": lambda r: setattr(r.scorer, "plugin", "test_length"),
    }
    _, printed, calls = _cached_summary(tmp_path, stubs, monkeypatch, "b",
                                        recipe_edit=edits[change])
    if change == "contexts":  # only the risky block's contexts changed
        assert calls.count("base") == 1 and "of casual read from the cache" in printed
    else:
        assert calls.count("base") == 2 and "read from the cache" not in printed


def test_eval_cache_off_computes_and_writes_nothing(tmp_path, stubs, monkeypatch):
    _cached_summary(tmp_path, stubs, monkeypatch, "a")
    monkeypatch.setenv("LOSSCRAFT_EVAL_CACHE", "0")
    calls = _counting_evaluate(monkeypatch)
    monkeypatch.setenv("LOSSCRAFT_CACHE_DIR", str(tmp_path / "other"))
    (tmp_path / "c").mkdir()
    recipe = _recipe(tmp_path / "c", extra={"second_scorer": {"plugin": "test_length"}})
    _summary(recipe, _run_folder(tmp_path / "c", stubs), stubs)
    assert calls.count("base") == 2 and not (tmp_path / "other").exists()
