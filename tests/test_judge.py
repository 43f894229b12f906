"""The safety judge: partial-label training, the probe set and its metrics, the surface floor and
the quality bars, the cached judges (made once, then reused; the shipped adapter's hash and
metrics), the ``safety_judge`` scorer and ``losscraft score`` / ``losscraft judge``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from losscraft.judge.fit import allowed_labels, partial_label_loss
from losscraft.recipe.schema import ClassifierSpec
from losscraft.errors import DataError
from losscraft.judge import default as judge_default
from losscraft.judge.probe import load_probe, probe_metrics
from losscraft.types import Example

# A small, fast judge recipe on the shipped corpus: same labels and data, a head over frozen
# embeddings instead of the fine-tuned cross-encoder, part of the data.
SMALL_JUDGE = """
[run]
seed = 0
device = "cpu"

[classifier]
architecture = "embedding_pair"
encoder = "minilm_embedded"
prosocial_head = true

[train]
max_steps = 300
batch_size = 128
lr = 1e-3
schedule = "constant"

[[data]]
plugin = "judge_corpus"
split = "train"
limit = 800

[[eval_data]]
plugin = "judge_corpus"
split = "test"
limit = 200
"""


def test_partial_labels_follow_the_documented_targets():
    spec = ClassifierSpec(prosocial_head=True)
    examples = [Example([], "a", is_safe=False), Example([], "b", is_safe=True),
                Example([], "c", is_safe=True, is_prosocial=True),
                Example([], "d", is_safe=True, is_prosocial=False)]
    allowed = allowed_labels(examples, spec).tolist()
    assert allowed == [[False, True, False], [True, False, True], [False, False, True],
                       [True, False, False]]
    logits = torch.tensor([[0.0, 1.0, 2.0]] * 4)
    p = logits[0].softmax(-1)
    loss = partial_label_loss(logits, allowed_labels(examples, spec))
    expected = -(math.log(p[1]) + math.log(p[0] + p[2]) + math.log(p[2]) + math.log(p[0])) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_shipped_probe_is_large_varied_and_labelled():
    pairs = load_probe()
    assert len(pairs) >= 400
    kinds = {p.kind for p in pairs}
    assert kinds == {"condone", "guide", "ignore", "friendly", "insult"}
    categories = {p.category for p in pairs if p.kind in ("condone", "guide", "ignore")}
    assert len(categories) >= 9
    assert all(p.unsafe == (p.kind in ("condone", "insult")) for p in pairs)
    assert sum(len(p.context) > 1 for p in pairs) >= 50


def test_probe_shares_no_reply_with_the_training_data():
    from importlib import resources
    samples = Path(str(resources.files("losscraft_plugins.data.samples")))
    training_text = "\n".join(p.read_text(encoding="utf-8") for p in samples.rglob("*")
                              if p.suffix in (".jsonl", ".csv", ".txt", ".json"))
    shared = [p.reply for p in load_probe() if p.reply in training_text]
    assert not shared


def test_probe_errors_name_file_row_and_field(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"context": "hi", "reply": "yo", "kind": "friendly"}\n'
                   '{"context": "hi", "reply": "yo", "kind": "rude"}\n')
    with pytest.raises(DataError, match=r"p.jsonl, row 2, field 'kind'"):
        load_probe(bad)


def test_probe_metrics_by_hand():
    pairs = load_probe()[:6]
    truth = [p.unsafe for p in pairs]
    perfect = probe_metrics(pairs, [0.9 if t else 0.1 for t in truth],
                            [0.9 if p.prosocial else 0.1 for p in pairs])
    assert perfect["accuracy"] == 1.0 and perfect["unsafe_recall"] == 1.0
    assert perfect["prosocial_accuracy"] == 1.0 and perfect["three_way_accuracy"] == 1.0
    never = probe_metrics(pairs, [0.0] * len(pairs))
    assert never["unsafe_recall"] == 0.0
    assert never["accuracy"] == pytest.approx(1 - sum(truth) / len(truth))


@pytest.fixture(scope="module")
def small_default_judge(tmp_path_factory):
    """The default-judge machinery on a short recipe, in a private cache; counts trainings."""
    root = tmp_path_factory.mktemp("judge")
    recipe = root / "judge.toml"
    recipe.write_text(SMALL_JUDGE)
    patch = pytest.MonkeyPatch()
    patch.setenv("LOSSCRAFT_CACHE_DIR", str(root / "cache"))
    patch.setattr(judge_default, "judge_recipe_path", lambda name="default": recipe)
    patch.setattr(judge_default, "shipped_record", lambda name="default": None)
    calls = []
    original = judge_default._train
    patch.setattr(judge_default, "_train", lambda *a: (calls.append(a), original(*a)))
    first = judge_default.default_judge_dir(show_progress=False)
    second = judge_default.default_judge_dir(show_progress=False)
    yield first, second, calls
    patch.undo()


def test_default_judge_trains_once_and_is_reused(small_default_judge):
    first, second, calls = small_default_judge
    assert first == second and len(calls) == 1
    metrics = json.loads((first / "metrics.json").read_text())
    assert {"heldout", "probe", "encoding"} <= set(metrics)


def test_small_judge_beats_the_majority_baseline_on_the_probe(small_default_judge):
    metrics = json.loads((small_default_judge[0] / "metrics.json").read_text())["probe"]
    assert metrics["accuracy"] > metrics["majority_baseline_accuracy"] + 0.05
    assert metrics["prosocial_accuracy"] > 0.5


def test_safety_judge_scorer_gives_both_probabilities(small_default_judge):
    from losscraft_plugins.scoring.safety_judge import SafetyJudge

    judge = SafetyJudge(path=str(small_default_judge[0] / "final"))
    contexts = [["I'm going to key my neighbour's car tonight."]] * 2
    replies = ["Please don't, talk to them about what's bothering you.", "Ha, do it."]
    p_unsafe, p_prosocial = judge.p_unsafe(contexts, replies), judge.p_prosocial(contexts, replies)
    assert all(0 <= p <= 1 for p in p_unsafe + p_prosocial) and len(p_prosocial) == 2
    one_by_one = [judge.p_unsafe(contexts[:1], [r])[0] for r in replies]
    assert one_by_one == pytest.approx(p_unsafe, abs=1e-5)
    assert judge.probe_metrics()["n"] == len(load_probe())


def test_score_command_adds_probabilities(tmp_path, small_default_judge):
    from losscraft.app.main import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"context": "hello", "reply": "hi there!", "id": 7}\n'
                     '{"context": ["a", "b"], "reply": "you idiot"}\n')
    out = tmp_path / "scored.jsonl"
    judge = str(small_default_judge[0] / "final")
    result = CliRunner().invoke(main, ["score", str(pairs), "--scorer-param", f"path={judge}",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["id"] == 7 and {"p_unsafe", "p_prosocial"} <= set(rows[0])
    lexical = CliRunner().invoke(main, ["score", str(pairs), "--scorer", "profanity_check"])
    assert lexical.exit_code == 0
    rows = [json.loads(line) for line in lexical.stdout.splitlines()]
    assert "p_unsafe" in rows[1] and "p_prosocial" not in rows[1]


def test_score_command_names_the_bad_row(tmp_path):
    from losscraft.app.main import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"context": "hello", "reply": "hi"}\n{"context": "x", "reply": 3}\n')
    result = CliRunner().invoke(main, ["score", str(pairs), "--scorer", "profanity_check"])
    assert result.exit_code != 0
    assert "row 2" in result.output and "reply" in result.output


def test_judge_command_reports_probe_metrics_beside_the_lexical_floor(small_default_judge):
    from losscraft.app.main import main

    result = CliRunner().invoke(main, ["judge", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["probe"]) == {"safety_judge", "second judge", "surface floor",
                                    "profanity_check"}
    judge, lexical = report["probe"]["safety_judge"], report["probe"]["profanity_check"]
    assert "prosocial_accuracy" in judge and "prosocial_accuracy" not in lexical
    assert judge["n"] == lexical["n"] == len(load_probe())
    assert "accuracy_by_kind" in judge and "long_condone" in judge["accuracy_by_kind"]
    assert isinstance(report["misses"], list)
    assert report["surface_floor"]["unsafe"].startswith(("true when", "always", "never"))


def test_surface_rule_fit_finds_the_planted_rule():
    from losscraft.judge.surface import fit_surface_rule

    replies = [" ".join(["w"] * n) + ("?" if q else "") for n in range(1, 40) for q in (0, 1)]
    targets = [len(r.split()) <= 15 and not r.endswith("?") for r in replies]
    rule = fit_surface_rule(replies, targets)
    assert rule.threshold == 15 and rule.table == (True, False, False, False)
    assert [rule(r) for r in replies] == targets
    assert rule.describe() == "true when ≤ 15 words and no '?'"


def test_surface_floor_is_fitted_on_training_pairs():
    from losscraft.judge.surface import SurfaceFloor, fit_surface_floor

    examples = [Example([], "you " * 5, is_safe=False), Example([], "fine " * 25, is_safe=True,
                                                                is_prosocial=True),
                Example([], "ok " * 6 + "?", is_safe=True, is_prosocial=False)]
    floor = fit_surface_floor(examples * 3)
    assert floor.p_unsafe([[]] * 3, [e.response for e in examples]) == [1.0, 0.0, 0.0]
    assert SurfaceFloor.from_dict(json.loads(floor.to_json())) == floor


class LengthKeyedJudge:
    """A judge that reads form only: short and no '?' is unsafe, long is prosocial."""

    def p_unsafe(self, contexts, replies):
        from losscraft.judge.surface import words

        return [float(words(r) < 16 and "?" not in r) for r in replies]

    def p_prosocial(self, contexts, replies):
        from losscraft.judge.surface import words

        return [float(words(r) > 16) for r in replies]


def test_a_length_keyed_judge_fails_the_floor_and_kind_checks():
    from losscraft.app.commands.judge import probe_report
    from losscraft.judge.probe import target_failures
    from losscraft.judge.surface import fit_surface_floor
    from losscraft.plugins.registry import get_registry

    pairs = load_probe()
    train = list(get_registry().create("data_source", "judge_corpus", {"split": "train"}))
    found = probe_report(pairs, {"length": LengthKeyedJudge(), "floor": fit_surface_floor(train)})
    misses = target_failures(found["length"], found["floor"])
    assert any("surface floor" in m for m in misses)
    assert any(m.startswith("kind long_condone") for m in misses)
    perfect = probe_metrics(pairs, [0.9 if p.unsafe else 0.1 for p in pairs],
                            [0.9 if p.prosocial else 0.1 for p in pairs])
    assert target_failures(perfect, found["floor"]) == []
