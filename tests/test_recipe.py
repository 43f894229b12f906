"""Recipe errors: each kind of mistake gives a RecipeError naming the file and the key path."""

import pytest

from conftest import TINY_STAGE, tiny_toml
from losscraft.errors import RecipeError
from losscraft.recipe import load_recipe, validate_recipe
from losscraft.recipe.overrides import apply_overrides


def _write(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def _check(tmp_path, registry, text, key, *words, overrides=()):
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError) as info:
        validate_recipe(load_recipe(path, list(overrides)), registry)
    message = str(info.value)
    assert str(path) in message
    assert info.value.key == key, message
    for word in words:
        assert word in message, message
    return message


def base(tmp_path, **changes):
    """The suite's tiny recipe (`conftest.tiny_toml`), with ``changes``."""
    return tiny_toml(tmp_path / "run", **changes)


def _edit(text, old, new):
    """``text`` with ``old`` replaced: the parser tests below edit the recipe's TOML itself."""
    assert old in text, old
    return text.replace(old, new)


def test_valid_recipe_passes(tmp_path, registry):
    notes = validate_recipe(load_recipe(_write(tmp_path, base(tmp_path))), registry)
    assert any("stage main" in n for n in notes)


def test_unknown_key(tmp_path, registry):
    text = _edit(base(tmp_path), 'name = "main"', 'name = "main"\nlearning_rat = 3')
    _check(tmp_path, registry, text, "stages.main.learning_rat", "unknown key")


def test_unknown_key_suggests(tmp_path, registry):
    text = _edit(base(tmp_path), "batch_size = 2", "batch_sise = 2")
    _check(tmp_path, registry, text, "stages.main.batch_sise", "did you mean 'batch_size'")


def test_wrong_type(tmp_path, registry):
    text = _edit(base(tmp_path), "max_steps = 4", 'max_steps = "four"')
    _check(tmp_path, registry, text, "stages.main.max_steps", "expected int")


def test_unknown_plugin(tmp_path, registry):
    text = base(tmp_path, stage={"terms": [{"plugin": "nlll"}]})
    _check(tmp_path, registry, text, "stages.main.terms[0].plugin", "did you mean 'nll'")


def test_bad_parameter(tmp_path, registry):
    text = base(tmp_path, stage={"data": [{"plugin": "toy_dialogs", "count": 12, "size": 3}]})
    _check(tmp_path, registry, text, "stages.main.data[0].size", "no parameter 'size'")


def test_missing_file(tmp_path, registry):
    text = base(tmp_path, model={"plugin": "hf", "path": "./no/such/model"})
    _check(tmp_path, registry, text, "model.path", "no/such/model")


def test_missing_recipe_and_bad_toml(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(_write(tmp_path, "[run\nseed = 1"))


def test_set_overrides_by_stage_name(tmp_path, registry):
    path = _write(tmp_path, base(tmp_path))
    recipe = load_recipe(path, ["stages.main.max_steps=2", "stages.main.terms.nll.weight=0.5",
                                "run.seed=9"])
    assert recipe.stages[0].max_steps == 2
    assert recipe.stages[0].terms[0].weight == 0.5
    assert recipe.run.seed == 9


def test_set_unknown_stage_and_bad_value(tmp_path, registry):
    path = _write(tmp_path, base(tmp_path))
    with pytest.raises(RecipeError, match="no entry 'adversarial'"):
        load_recipe(path, ["stages.adversarial.max_steps=2"])
    _check(tmp_path, registry, base(tmp_path), "stages.main.lr", "expected float",
           overrides=['stages.main.lr="fast"'])


def test_overrides_parse_toml_values():
    raw = apply_overrides({"a": {"b": 1}}, ["a.b=2.5", "a.c=[1, 2]", "a.d=/some/path", "e=true"])
    assert raw == {"a": {"b": 2.5, "c": [1, 2], "d": "/some/path"}, "e": True}


def test_undeclared_expert(tmp_path, registry):
    text = base(tmp_path, stage={"terms": [{"plugin": "nll"}, {"plugin": "safety_loss"}]})
    if "safety_loss" not in registry.names("objective"):
        pytest.fail("safety_loss objective plugin is not registered")
    _check(tmp_path, registry, text, "stages.main.terms[1]", "expert", "not declared")


def test_a_disabled_stage_is_left_out_and_cannot_feed_an_expert(tmp_path, registry):
    warmup = {"name": "warmup", "enabled": False, "lr": 1e-2,
              "data": [{"plugin": "local_files", "path": "nowhere.jsonl"}],
              "terms": [{"plugin": "nll"}]}
    text = base(tmp_path, stages=[warmup, TINY_STAGE])
    recipe = load_recipe(_write(tmp_path, text))
    assert [s.name for s in recipe.stages] == ["main"]
    wired = base(tmp_path, stages=[warmup, TINY_STAGE], experts={"clean": {"from_stage": "warmup"}})
    _check(tmp_path, registry, wired, "experts.clean.from_stage", "disabled", "path")
    _check(tmp_path, registry, base(tmp_path), "stages", "every stage is disabled",
           overrides=["stages.main.enabled=false"])
