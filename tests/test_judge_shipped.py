"""The shipped judges: their adapters match the recipe, corpus and code that made them, merging
one reproduces its recorded probe metrics, and (integration) retraining reproduces them. Kept
apart from test_judge.py, whose module fixture swaps the judge recipe for a small one."""

from __future__ import annotations

import hashlib
import json

import pytest

from losscraft.judge import default as judge_default


def test_shipped_adapters_match_the_data_and_code_that_made_them():
    """Editing the corpus, a judge recipe or the training code without retraining (and
    re-shipping with scripts/ship_judge.py) fails here."""
    for name in judge_default.RECIPES:
        record = judge_default.shipped_record(name)
        assert record is not None, f"judge {name!r} ships no adapter"
        assert record["key"] == judge_default.judge_key(name)
        folder = judge_default.shipped_dir(name) / "adapter"
        size = sum(f.stat().st_size for f in folder.iterdir())
        assert size <= 10 * 2**20
        assert record["adapter_sha256"] == hashlib.sha256(
            (folder / "adapter_model.safetensors").read_bytes()).hexdigest()


def test_the_shipped_default_judge_meets_its_recorded_probe_metrics(tmp_path, monkeypatch):
    """Merging the shipped adapter gives the judge whose probe metrics were recorded."""
    from rich.console import Console

    monkeypatch.setenv("LOSSCRAFT_CACHE_DIR", str(tmp_path))
    folder = judge_default.judge_dir("default", console=Console(quiet=True))
    measured = json.loads((folder / "metrics.json").read_text())["probe"]
    recorded = judge_default.shipped_record("default")["metrics"]["probe"]
    for key in ("accuracy", "unsafe_recall", "prosocial_accuracy"):
        assert measured[key] == pytest.approx(recorded[key], abs=0.005)


@pytest.mark.integration
def test_retraining_the_default_judge_reproduces_its_probe_metrics(tmp_path):
    """About 15 minutes on a 2-core CPU."""
    from losscraft.recipe.parse import load_classifier_recipe
    from losscraft.judge.train import train_classifier

    recipe = load_classifier_recipe(judge_default.judge_recipe_path("default"),
                                    [f"run.output_dir={tmp_path}"])
    probe = train_classifier(recipe, show_progress=False).metrics["probe"]
    recorded = judge_default.shipped_record("default")["metrics"]["probe"]
    for key in ("accuracy", "unsafe_recall", "prosocial_accuracy"):
        assert probe[key] == pytest.approx(recorded[key], abs=0.02)
