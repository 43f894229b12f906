"""The safety judge: partial-label training, the probe set and its metrics, the cached default
judge (trained once, then reused; beats the majority baseline on the probe — a test that can
fail), the ``safety_judge`` scorer and ``losscraft score``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from losscraft.classifier.fit import allowed_labels, partial_label_loss
from losscraft.classifier.schema import ClassifierSpec
from losscraft.errors import DataError
from losscraft.judge import default as judge_default
from losscraft.judge.probe import load_probe, probe_metrics
from losscraft.types import Example

# A small version of the shipped judge recipe: same architecture and labels, part of the data.
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

[split]
fraction = 0.1

[[data]]
plugin = "mic"
split = "train"
limit = 300

[[data]]
plugin = "bot_adversarial_dialogue"
split = "train"
speaker = "bot"
limit = 300
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
    assert len(pairs) >= 150
    kinds = {p.kind for p in pairs}
    assert kinds == {"condone", "guide", "ignore", "friendly", "insult"}
    categories = {p.category for p in pairs if p.kind in ("condone", "guide", "ignore")}
    assert {"harm_to_others", "self_harm", "dishonesty", "cruelty", "prejudice",
            "dangerous_health", "illegal"} <= categories
    assert all(p.unsafe == (p.kind in ("condone", "insult")) for p in pairs)


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
    patch.setattr(judge_default, "judge_recipe_path", lambda: recipe)
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
    from losscraft.cli import main

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
    from losscraft.cli import main

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"context": "hello", "reply": "hi"}\n{"context": "x", "reply": 3}\n')
    result = CliRunner().invoke(main, ["score", str(pairs), "--scorer", "profanity_check"])
    assert result.exit_code != 0
    assert "row 2" in result.output and "reply" in result.output


def test_judge_command_reports_probe_metrics_beside_the_lexical_floor(small_default_judge):
    from losscraft.cli import main

    result = CliRunner().invoke(main, ["judge", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["probe"]) == {"safety_judge", "profanity_check"}
    judge, floor = report["probe"]["safety_judge"], report["probe"]["profanity_check"]
    assert "prosocial_accuracy" in judge and "prosocial_accuracy" not in floor
    assert judge["n"] == floor["n"] == len(load_probe())
