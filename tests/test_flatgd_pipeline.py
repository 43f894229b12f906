"""The FlatGD recipe (recipes/flatgd.toml) end to end on the tiny model, with each penalty method.

Only sizes are overridden: the clean/toxic expert stages, the experts' ``from_stage`` wiring,
``keep_model = false`` on the toxic expert and the main stage's terms are the recipe's own. Checks:
the penalty term logs ``grad_norm``/``penalty``; the experts stay bit-identical through the main
stage; the toxic expert's weights are deleted at the end; an expert whose tokenizer differs from
the policy's is refused with `ModelError` before the main stage trains.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from losscraft import ModelError, hookimpl
from losscraft.plugins.protocols import LoadedModel
from losscraft.core.penalty import GradientNormPenalty
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft.recipe import load_recipe
from losscraft.trainer import Trainer

RECIPE = Path(__file__).parent.parent / "recipes" / "flatgd.toml"
STAGES = ("clean_expert", "toxic_expert", "main")


def _overrides(output_dir, method: str) -> list[str]:
    sets = ["model.plugin=tiny", f"run.output_dir={output_dir}",
            "stages.clean_expert.max_steps=1", "stages.toxic_expert.max_steps=1",
            "stages.main.max_steps=2", f"stages.main.terms.safety.penalty.method={method}"]
    for stage in STAGES:
        sets += [f"stages.{stage}.batch_size=4", f"stages.{stage}.grad_accum=1",
                 f"stages.{stage}.max_context_tokens=48", f"stages.{stage}.max_response_tokens=12"]
    return sets


class RecordingTrainer(Trainer):
    """Keeps a copy of each expert's weights when it is loaded, and each stage's objective."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.expert_weights: dict[str, dict[str, torch.Tensor]] = {}
        self.objectives = {}

    def _objective(self, stage):
        self.objectives[stage.name] = super()._objective(stage)
        return self.objectives[stage.name]

    def _load_experts(self, objective):
        experts = super()._load_experts(objective)
        for name, model in experts.items():
            self.expert_weights.setdefault(
                name, {k: v.detach().clone() for k, v in model.state_dict().items()})
        return experts


@pytest.mark.parametrize("method", ["exact", "finite_difference"])
def test_flatgd_two_steps(method, tmp_path, registry):
    recipe = load_recipe(RECIPE, _overrides(tmp_path / "run", method))
    trainer = RecordingTrainer(recipe, registry=registry, show_progress=False)
    result = trainer.run()

    penalties = [t.loss for t in trainer.objectives["main"].terms
                 if isinstance(t.loss, GradientNormPenalty)]
    assert [p.method for p in penalties] == [method]
    records = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    assert [(r["stage"], r["stage_step"]) for r in records] == [
        ("clean_expert", 1), ("toxic_expert", 1), ("main", 1), ("main", 2)]
    for record in records[2:]:
        norm = record["safety_grad_penalty/grad_norm"]
        penalty = record["safety_grad_penalty/penalty"]
        assert math.isfinite(norm) and norm > 0
        assert penalty == pytest.approx(norm ** 2, rel=1e-4)
        assert record["safety_grad_penalty/weight"] == 0.01
        for key in ("lm", "safety", "safety/js_clean", "safety/js_toxic", "loss"):
            assert math.isfinite(record[key]), key

    # the experts are frozen: bit-identical after the main stage to what was loaded
    assert set(trainer.expert_weights) == {"clean", "toxic"}
    for name, loaded in trainer.expert_weights.items():
        model = trainer.experts[name]
        assert not any(p.requires_grad for p in model.parameters())
        after = model.state_dict()
        for key in loaded:
            assert torch.equal(loaded[key], after[key]), (name, key)
    clean_saved = load_file(str(tmp_path / "run" / "stages" / "clean_expert" / "model"
                                / "model.safetensors"))
    for key, value in clean_saved.items():
        assert torch.equal(value, trainer.expert_weights["clean"][key]), key
    main_saved = load_file(str(result.stage_models["main"] / "model.safetensors"))
    assert any(not torch.equal(main_saved[k], clean_saved[k]) for k in clean_saved)

    # keep_model = false: the toxic expert's weights are gone; the clean expert's are kept
    assert not (tmp_path / "run" / "stages" / "toxic_expert" / "model").exists()
    assert "toxic_expert" not in result.stage_models
    assert (tmp_path / "run" / "stages" / "clean_expert" / "model").is_dir()
    assert result.final_model.is_dir()


class WiderVocabTiny:
    """The tiny model with one extra token in its tokenizer (an incompatible expert; tests).

    Args:
        seed: seed of the weight initialisation.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def load(self, *, device: str = "cpu", dtype=None) -> LoadedModel:
        tokenizer = tiny_tokenizer()
        tokenizer.add_tokens(["<extra>"])
        return LoadedModel(tiny_model(len(tokenizer), seed=self.seed).to(device), tokenizer,
                           "wider-vocab tiny")


class _TestModels:
    @hookimpl
    def register_models(self, register):
        register("tiny_wider_vocab", WiderVocabTiny)


def test_expert_with_another_vocabulary_is_refused_before_training(tmp_path, registry):
    registry.add_plugin(_TestModels(), "test_flatgd_models")
    text = RECIPE.read_text()
    wiring = '[experts.clean]\nfrom_stage = "clean_expert"\n'
    assert wiring in text
    path = tmp_path / "flatgd_bad_expert.toml"
    path.write_text(text.replace(wiring, '[experts.clean]\nplugin = "tiny_wider_vocab"\n'))
    recipe = load_recipe(path, _overrides(tmp_path / "run", "finite_difference"))
    with pytest.raises(ModelError, match=r"expert 'clean'.*vocabulary has 260 tokens.*259"):
        Trainer(recipe, registry=registry, show_progress=False).run()
    records = [json.loads(line) for line in
               (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "main" not in {r["stage"] for r in records}
    assert not (tmp_path / "run" / "stages" / "main").exists()
