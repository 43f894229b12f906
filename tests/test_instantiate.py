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
from losscraft.testing.builders import recipe_toml
from losscraft.trainer import Trainer

#: parses, but has five problems for validation to report (reranker, data source, terms)
BROKEN = recipe_toml(report=None, reranker={"plugin": "prosocial", "scorer": "profanity_chek"},
                     stages=[{"name": "main", "max_steps": 1,
                              "data": [{"plugin": "toy_dialogs", "count": "many"}],
                              "terms": [{"plugin": "nll", "rows": "some"},
                                        {"plugin": "safety_loss", "clean_expert": "clean",
                                         "toxic_expert": "toxic"}]}])


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
    path = tiny_recipe(stage={"terms": [{"plugin": "nl"}]})
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(path), registry)
    assert not isinstance(err.value, RecipeErrors)
    assert err.value.key == "stages.main.terms[0].plugin"


def test_penalty_radius_is_checked_with_its_key(tmp_path, registry, tiny_recipe):
    path = tiny_recipe(stage={"terms": [{"plugin": "nll",
                                         "penalty": {"weight": 0.1, "radius": 0}}]})
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
    def with_mode(mode):
        return tiny_recipe(stage={"terms": [{"plugin": "nll",
                                             "penalty": {"weight": 0.1, "exact_mode": mode}}]})

    for mode in ("layerwise", "autograd", "torch.func"):
        path = with_mode(mode)
        built = build_recipe(load_recipe(path), registry)
        assert built.stage("main").objective.terms[1].loss.exact_mode == mode
    path = with_mode("jvp")
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(path), registry)
    assert err.value.key == "stages.main.terms[0].penalty.exact_mode"
    assert "layerwise" in str(err.value) and str(path) in str(err.value)


def test_build_includes_the_penalty_and_nested_scorer(tmp_path, registry, tiny_recipe):
    path = tiny_recipe(stage={"terms": [{"plugin": "nll", "penalty": {"weight": 0.1}}]},
                       reranker={"plugin": "prosocial_reranker", "scorer": "profanity_check"})
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
