"""losscraft.evaluation.reply_cache: evaluations kept across runs under a key of everything that
decides them (the summary's use of it is tested in test_summary.py)."""

from __future__ import annotations

import torch

from losscraft.evaluation.reply_cache import (cache_key, cached_evaluation, scorer_fingerprint,
                                              weights_fingerprint)
from losscraft.evaluation.result import ContextSamples, EvalResult, SampledResponse
from losscraft.models.tiny import tiny_model


def _result(text="a reply"):
    samples = [ContextSamples(["hi"], [SampledResponse(text, 0.25, nll=1.5, n_tokens=3)])]
    metrics = {"toxicity_probability": 0.0, "expected_max_toxicity": 0.25, "perplexity": 1.6,
               "div1": 1.0, "div2": 1.0}
    return EvalResult("base", "summary:risky", "tiny", "abc", metrics, {"k": 1}, samples, {})


def test_an_entry_is_computed_once_then_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSCRAFT_EVAL_CACHE", "1")
    calls = []

    def compute():
        calls.append(1)
        return _result()

    first, reused = cached_evaluation({"seed": 0}, compute, root=tmp_path)
    assert not reused and len(calls) == 1
    again, reused = cached_evaluation({"seed": 0}, compute, root=tmp_path)
    assert reused and len(calls) == 1 and again == first
    other, reused = cached_evaluation({"seed": 1}, lambda: _result("other"), root=tmp_path)
    assert not reused and other.samples[0].responses[0].text == "other"
    assert cache_key({"seed": 0}) != cache_key({"seed": 1})
    assert (tmp_path / cache_key({"seed": 0}) / "key.json").is_file()


def test_a_broken_entry_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSCRAFT_EVAL_CACHE", "1")
    cached_evaluation({"seed": 0}, _result, root=tmp_path)
    (tmp_path / cache_key({"seed": 0}) / "eval.json").write_text("{not json")
    found, reused = cached_evaluation({"seed": 0}, lambda: _result("fresh"), root=tmp_path)
    assert not reused and found.samples[0].responses[0].text == "fresh"
    assert cached_evaluation({"seed": 0}, _result, root=tmp_path)[0] == found


def test_the_weights_fingerprint_sees_one_changed_weight():
    model = tiny_model(64, seed=0)
    before = weights_fingerprint(model)
    assert weights_fingerprint(tiny_model(64, seed=0)) == before
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-6
    assert weights_fingerprint(model) != before


def test_the_scorer_fingerprint_is_its_behaviour():
    class Scorer:
        def __init__(self, scale):
            self.scale = scale

        def p_unsafe(self, contexts, responses):
            return [min(1.0, self.scale * len(r) / 100) for r in responses]

    assert scorer_fingerprint(Scorer(1.0)) == scorer_fingerprint(Scorer(1.0))
    assert scorer_fingerprint(Scorer(1.0)) != scorer_fingerprint(Scorer(1.5))
