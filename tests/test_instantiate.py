"""The build/validate seam: `build_recipe` builds every component of a recipe (nested scorers,
penalties and experts included), `validate` is that construction and reports every problem at
once, and the trainer trains exactly what was built."""

from __future__ import annotations

import dataclasses

import pytest

from losscraft.errors import RecipeError, RecipeErrors
from losscraft.recipe.instantiate import build_objective, build_recipe
from losscraft.recipe import load_recipe, validate_recipe
from losscraft.recipe.schema import PenaltySpec
from losscraft.trainer import Trainer

BROKEN = """
[model]
plugin = "tiny"

[reranker]
plugin = "prosocial"
scorer = "profanity_chek"

[[stages]]
name = "main"
max_steps = 1

  [[stages.data]]
  plugin = "toy_dialogs"
  count = "many"

  [[stages.terms]]
  plugin = "nll"
  rows = "some"

  [[stages.terms]]
  plugin = "safety_loss"
  clean_expert = "clean"
  toxic_expert = "toxic"
"""


def test_validate_reports_every_problem_with_file_and_key(tmp_path, registry):
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN)
    with pytest.raises(RecipeErrors) as err:
        validate_recipe(load_recipe(path), registry)
    keys = [e.key for e in err.value.errors]
    assert keys == ["reranker.scorer", "stages.main.data[0].count", "stages.main.terms[0].rows",
                    "stages.main.terms[1]", "stages.main.terms[1]"], keys
    message = str(err.value)
    assert message.startswith("5 problems in the recipe:")
    assert "did you mean 'profanity_check'" in message and str(path) in message
    assert "expert 'clean'" in message and "expert 'toxic'" in message


def test_single_problem_is_raised_as_itself(tmp_path, registry, tiny_recipe):
    path = tiny_recipe()
    path.write_text(path.read_text().replace('plugin = "nll"', 'plugin = "nl"'))
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(path), registry)
    assert not isinstance(err.value, RecipeErrors)
    assert err.value.key == "stages.main.terms[0].plugin"


def test_penalty_radius_is_checked_with_its_key(tmp_path, registry, tiny_recipe):
    path = tiny_recipe()
    path.write_text(path.read_text().replace('  plugin = "nll"\n',
                                             '  plugin = "nll"\n  [stages.terms.penalty]\n'
                                             '  weight = 0.1\n  radius = 0\n'))
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(path), registry)
    assert err.value.key == "stages.main.terms[0].penalty.radius" and str(path) in str(err.value)
    # the same check where the objective is built (a recipe object made in code)
    recipe = load_recipe(tiny_recipe())
    stage = recipe.stages[0]
    stage.terms[0].penalty = PenaltySpec(weight=0.1, method="exact", radius=-1.0)
    with pytest.raises(RecipeError) as err:
        build_objective(stage, recipe.path, registry)
    assert err.value.key == "stages.main.terms[0].penalty.radius"


def test_penalty_exact_mode_is_read_and_checked_with_its_key(registry, tiny_recipe):
    path = tiny_recipe()
    base = path.read_text()
    for mode in ("layerwise", "autograd", "torch.func"):
        path.write_text(base.replace('  plugin = "nll"\n', '  plugin = "nll"\n  [stages.terms.penalty]\n'
                                     f'  weight = 0.1\n  exact_mode = "{mode}"\n'))
        built = build_recipe(load_recipe(path), registry)
        assert built.stage("main").objective.terms[1].loss.exact_mode == mode
    path.write_text(base.replace('  plugin = "nll"\n', '  plugin = "nll"\n  [stages.terms.penalty]\n'
                                 '  weight = 0.1\n  exact_mode = "jvp"\n'))
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(path), registry)
    assert err.value.key == "stages.main.terms[0].penalty.exact_mode"
    assert "layerwise" in str(err.value) and str(path) in str(err.value)


def test_build_includes_the_penalty_and_nested_scorer(tmp_path, registry, tiny_recipe):
    path = tiny_recipe()
    text = path.read_text().replace('  plugin = "nll"\n',
                                    '  plugin = "nll"\n  [stages.terms.penalty]\n  weight = 0.1\n')
    path.write_text(text + '\n[reranker]\nplugin = "prosocial_reranker"\n'
                           'scorer = "profanity_check"\n')
    built = build_recipe(load_recipe(path), registry)
    names = [t.name for t in built.stage("main").objective.terms]
    assert names == ["nll", "nll_grad_penalty"]
    from losscraft_plugins.scoring.profanity_check import ProfanityScorer

    assert isinstance(built.reranker.scorer, ProfanityScorer)
    assert built.stage("main").data_sources[0][0].plugin == "toy_dialogs"


def test_trainer_trains_the_built_components(tmp_path, registry, tiny_recipe):
    recipe = load_recipe(tiny_recipe())
    built = build_recipe(recipe, registry)
    registry.components["objective"].clear()       # the trainer must not look names up again
    registry.components["data_source"].clear()
    result = Trainer(recipe, registry=registry, show_progress=False, built=built).run()
    assert result.final_model.is_dir()
    assert dataclasses.is_dataclass(built.stage("main"))
