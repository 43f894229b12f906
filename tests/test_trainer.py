"""Training runs end to end on a tiny model: metrics, checkpoints, a loadable model, resume."""

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import TINY_STAGE, tiny_toml
from losscraft.app.main import main
from losscraft.errors import LosscraftError
from losscraft.recipe import load_recipe
from losscraft.trainer import Trainer


def _recipe(tmp_path, name="run", extra=()):
    path = tmp_path / f"{name}.toml"
    path.write_text(tiny_toml(tmp_path / name))
    return load_recipe(path, list(extra))


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_two_step_run_writes_metrics_checkpoint_and_model(tmp_path, registry):
    recipe = _recipe(tmp_path, extra=["stages.main.max_steps=2",
                                      "stages.main.checkpoint_every=1"])
    result = Trainer(recipe, registry=registry, show_progress=False).run()
    records = [json.loads(l) for l in result.metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for key in ("loss", "nll", "nll/weight", "lr", "tokens_per_s", "grad_norm"):
        assert key in records[0], key
    assert (result.output_dir / "checkpoints" / "step-000001" / "trainable.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(result.final_model)
    tok = AutoTokenizer.from_pretrained(result.final_model)
    assert model.config.vocab_size == len(tok)
    assert tok.chat_template


def test_resume_gives_identical_weights(tmp_path, registry):
    straight = Trainer(_recipe(tmp_path, "straight"), registry=registry, show_progress=False).run()
    recipe = _recipe(tmp_path, "resumed")
    first = Trainer(recipe, registry=registry, show_progress=False, stop_after=2).run()
    assert first.stopped_early and first.final_model is None
    second = Trainer(recipe, registry=registry, show_progress=False).run(resume=True)
    a, b = _weights(straight.final_model), _weights(second.final_model)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    steps = [json.loads(l)["step"] for l in second.metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_two_stages_chain_weights(tmp_path, registry):
    second = {"name": "second", "max_steps": 1, "batch_size": 2, "lr": 0.0,
              "data": [{"plugin": "toy_dialogs"}], "terms": [{"plugin": "nll"}]}
    text = tiny_toml(tmp_path / "two", stages=[TINY_STAGE, second])
    path = tmp_path / "two.toml"
    path.write_text(text)
    result = Trainer(load_recipe(path), registry=registry, show_progress=False).run()
    first, second = (_weights(result.stage_models[n]) for n in ("main", "second"))
    for key in first:  # lr 0 in stage 2: its output equals stage 1's weights
        assert torch.equal(first[key], second[key]), key


def test_lora_run_saves_merged_model(tmp_path, registry):
    path = tmp_path / "lora.toml"
    path.write_text(tiny_toml(tmp_path / "lora",
                              lora={"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}))
    result = Trainer(load_recipe(path, ["stages.main.max_steps=2"]), registry=registry,
                     show_progress=False).run()
    weights = _weights(result.final_model)
    assert not any("lora" in k for k in weights)
    AutoModelForCausalLM.from_pretrained(result.final_model)


def test_existing_output_is_not_overwritten(tmp_path, registry):
    recipe = _recipe(tmp_path, extra=["stages.main.max_steps=1"])
    Trainer(recipe, registry=registry, show_progress=False).run()
    with pytest.raises(LosscraftError, match="--resume"):
        Trainer(recipe, registry=registry, show_progress=False).run()


def test_cli_run_and_validate_errors(tmp_path, registry):
    path = tmp_path / "cli.toml"
    path.write_text(tiny_toml(tmp_path / "cli", stage={"terms": [{"plugin": "nl"}]}))
    runner = CliRunner()
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "stages.main.terms[0].plugin" in result.output and "did you mean 'nll'" in result.output
