"""Safety-classifier recipes: recipe errors name the key; training on a small sample beats the
majority-class baseline on held-out pairs; the saved model loads through the ``hf_classifier``
scorer by path; ProsocialDialog-derived pairs follow their documented construction."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from losscraft.judge import train_classifier
from losscraft.recipe.parse import (is_classifier_recipe, is_classifier_recipe_file,
                                    load_classifier_recipe)
from losscraft.judge.validate import validate_classifier_recipe
from losscraft.judge.data import dialogue_key, split_pairs
from losscraft.judge.encoder import embedded_minilm_path
from losscraft.judge.metrics import binary_metrics
from losscraft.recipe.schema import SplitSpec
from losscraft.errors import LosscraftError, RecipeError
from losscraft.plugins.registry import get_registry
from losscraft.types import SAFETY_LABELS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "losscraft" / "judge" / "judge.toml"

# ProsocialDialog user turns: casual (safe) vs needing caution or intervention (unsafe), with the
# real MiniLM. Short pairs keep this to a few seconds of training.
RECIPE = """
[run]
seed = 0
output_dir = "{out}"
device = "cpu"

[classifier]
encoder = "{encoder}"
max_length = 64

[train]
epochs = 3.0
batch_size = 16
lr = 1e-4

[split]
fraction = 0.25

[[data]]
plugin = "prosocial_safety_pairs"
gold_responses = false
limit = 132                     # the templated dialogues: 67 casual + 65 unsafe user turns
"""


def _write(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=100)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classifier")
    path = _write(tmp, RECIPE.format(out=tmp / "run", encoder="minilm_embedded"))
    recipe = load_classifier_recipe(path)
    validate_classifier_recipe(recipe)
    return recipe, train_classifier(recipe, console=_quiet(), show_progress=False)


def test_beats_majority_baseline_on_held_out(trained):
    _, result = trained
    held = result.metrics["heldout"]
    assert held["n"] >= 20 and 0 < held["n_unsafe"] < held["n"]
    assert held["accuracy"] > held["majority_baseline_accuracy"], held
    assert held["f1"] > 0.5, held


def test_metrics_and_predictions_files(trained):
    recipe, result = trained
    written = json.loads(result.metrics_path.read_text())
    assert written["heldout"] == result.metrics["heldout"]
    assert written["settings"]["classifier"]["max_length"] == 64
    lines = (Path(recipe.run.output_dir) / "heldout_predictions.jsonl").read_text().splitlines()
    assert len(lines) == written["heldout"]["n"]
    assert written["train"]["n"] + written["heldout"]["n"] == 132  # 67 casual + 65 unsafe
    assert written["train"]["class_weights"][1] == pytest.approx(
        written["train"]["n"] / (2 * written["train"]["n_unsafe"]))


def test_saved_model_loads_through_hf_classifier_scorer(trained):
    recipe, result = trained
    scorer = get_registry().create("scorer", "hf_classifier",
                                   {"path": str(result.final_model), "max_length": 64})
    rows = [json.loads(line) for line in
            (Path(recipe.run.output_dir) / "heldout_predictions.jsonl").read_text().splitlines()]
    probs = scorer.p_unsafe([r["history"] for r in rows], [r["response"] for r in rows])
    assert all(0.0 <= p <= 1.0 for p in probs)
    # the scorer encodes exactly as training did: same probabilities as the held-out evaluation
    assert probs == pytest.approx([r["p_unsafe"] for r in rows], abs=1e-4)


def test_existing_output_needs_overwrite(trained):
    recipe, _ = trained
    with pytest.raises(LosscraftError, match="--overwrite"):
        train_classifier(recipe, console=_quiet(), show_progress=False)


def test_local_encoder_folder_and_unsafe_index_zero(tmp_path):
    """Any encoder folder works (here a tiny BERT built from config, with MiniLM's tokenizer)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path / "tiny_bert"
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(embedded_minilm_path()).save_pretrained(folder)
    text = RECIPE.format(out=tmp_path / "run", encoder=folder)
    text = text.replace("epochs = 3.0", "max_steps = 2")
    text = text.replace("max_length = 64", "max_length = 32\nunsafe_index = 0")
    result = train_classifier(load_classifier_recipe(_write(tmp_path, text)), console=_quiet(),
                              show_progress=False)
    config = json.loads((result.final_model / "config.json").read_text())
    assert config["id2label"] == {"0": "unsafe", "1": "safe"}
    scorer = get_registry().create("scorer", "hf_classifier",
                                   {"path": str(result.final_model), "unsafe_index": 0})
    assert 0.0 <= scorer.p_unsafe([["hi"]], ["hello"])[0] <= 1.0


BASE = RECIPE.format(out="unused", encoder="minilm_embedded")


@pytest.mark.parametrize("old, new, key, words", [
    ("batch_size = 16", "batch_sise = 16", "train.batch_sise", ["did you mean 'batch_size'"]),
    ("lr = 1e-4", 'lr = "fast"', "train.lr", ["expected float"]),
    ("[split]", "[splitt]", "splitt", ["unknown key", "did you mean 'split'"]),
    ("fraction = 0.25", "fraction = 1.5", "split.fraction", ["(0, 1)"]),
    ("fraction = 0.25", 'by = "speaker"', "split.by", ["'dialogue' or 'example'"]),
    ("max_length = 64", "max_length = 64\nunsafe_index = 2", "classifier.unsafe_index",
     ["0 or 1"]),
    ('encoder = "minilm_embedded"', 'encoder = "./no/such/folder"', "classifier.encoder",
     ["does not exist"]),
    ('plugin = "prosocial_safety_pairs"', 'plugin = "prosocial_safety_pair"', "data[0].plugin",
     ["did you mean 'prosocial_safety_pairs'"]),
    ("gold_responses = false", "gold_replies = false", "data[0].gold_replies", ["no parameter 'gold_replies'"]),
    ("gold_responses = false", 'unsafe_from = "__toxic__"', "data[0].unsafe_from",
     ["unknown safety label"]),
    ("[split]", "[[eval_data]]\nplugin = \"prosocial_safety_pairs\"\n[split]", "split",
     ["not both"]),
])
def test_recipe_errors_name_the_key(tmp_path, old, new, key, words):
    assert old in BASE
    path = _write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(RecipeError) as info:
        validate_classifier_recipe(load_classifier_recipe(path))
    assert info.value.key == key, str(info.value)
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_overrides_and_profiles(tmp_path):
    path = _write(tmp_path, BASE)
    recipe = load_classifier_recipe(path, ["train.lr=1e-3", "data.0.limit=10"])
    assert recipe.train.lr == 1e-3 and recipe.data[0].limit == 10
    with pytest.raises(RecipeError) as info:
        load_classifier_recipe(path, ["classifier.max_lenght=3"])
    assert info.value.key == "classifier.max_lenght" and "max_length" in str(info.value)
    hub = load_classifier_recipe(SHIPPED, ["run.profile=hub"])
    assert hub.classifier.encoder == "FacebookAI/roberta-base"
    assert hub.classifier.max_length == 256 and hub.train.lr == 2e-5


def test_shipped_recipe_is_a_valid_classifier_recipe():
    assert is_classifier_recipe_file(SHIPPED)
    assert not is_classifier_recipe_file(ROOT / "recipes" / "clean.toml")
    assert not is_classifier_recipe({"run": {}, "model": {"plugin": "tiny"}})
    recipe = load_classifier_recipe(SHIPPED)
    notes = validate_classifier_recipe(recipe)
    assert recipe.classifier.encoder == "minilm_embedded" and recipe.split is None
    assert recipe.classifier.architecture == "cross_encoder" and recipe.classifier.lora_r > 0
    assert [(d.plugin, d.params["split"]) for d in recipe.data] == [("judge_corpus", "train")]
    assert [(d.plugin, d.params["split"]) for d in recipe.eval_data] == [("judge_corpus", "test")]
    assert any("held-out" in n for n in notes)


def test_cli_validate_dispatches_classifier_recipes():
    from losscraft.app.main import main

    result = CliRunner().invoke(main, ["validate", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output and "MiniLM" in result.output


def test_prosocial_safety_pairs_construction():
    rows = list(get_registry().create("data_source", "prosocial_dialog", {}))
    pairs = list(get_registry().create("data_source", "prosocial_safety_pairs", {}))
    unsafe_labels = set(SAFETY_LABELS[SAFETY_LABELS.index("__needs_caution__"):])
    by_id = {ex.id: ex for ex in rows}
    kinds = Counter((p.meta["kind"], p.is_safe) for p in pairs)
    assert kinds[("gold_reply", True)] == len(rows) and kinds[("gold_reply", False)] == 0
    assert kinds[("user_utterance", False)] == sum(r.safety_label in unsafe_labels for r in rows)
    assert kinds[("user_utterance", True)] == sum(r.safety_label == "__casual__" for r in rows)
    for p in pairs:
        if p.meta["kind"] == "user_utterance":
            row = by_id[p.id.removesuffix(":utterance")]
            assert (p.history, p.response) == (row.history[:-1], row.history[-1])
            assert p.safety_label == row.safety_label
            assert (p.safety_label in unsafe_labels) == (not p.is_safe)


def test_split_keeps_dialogues_on_one_side():
    pairs = list(get_registry().create("data_source", "prosocial_safety_pairs", {}))
    train, held = split_pairs(pairs, SplitSpec(fraction=0.2, by="dialogue"), seed=1)
    assert len(train) + len(held) == len(pairs)
    assert not {dialogue_key(p) for p in train} & {dialogue_key(p) for p in held}
    assert 0.15 < len(held) / len(pairs) < 0.25
    again = split_pairs(pairs, SplitSpec(fraction=0.2, by="dialogue"), seed=1)[1]
    assert [p.id for p in again] == [p.id for p in held]


def test_binary_metrics_by_hand():
    m = binary_metrics([True, True, False, False, False], [0.9, 0.2, 0.6, 0.1, 0.5])
    assert m["confusion"] == {"tp": 1, "fp": 1, "tn": 2, "fn": 1}
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(0.5) and m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["majority_baseline_accuracy"] == pytest.approx(3 / 5)
    assert m["majority_class"] == "safe"


def test_overwrite_replaces_only_the_runs_own_files(tmp_path):
    from losscraft.judge.train import _prepare_output

    out = tmp_path / "run"
    (out / "final").mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(LosscraftError, match="--overwrite"):
        _prepare_output(out, overwrite=False)
    _prepare_output(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
