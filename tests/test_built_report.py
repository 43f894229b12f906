"""The run summary's components are part of the recipe `build_recipe` builds: `validate` checks
them at their keys, and the summary receives them instead of building them again."""

from __future__ import annotations

import pytest

from losscraft.errors import RecipeError
from losscraft.recipe import build_recipe, load_recipe, validate_recipe
from losscraft.recipe.schema import DEFAULT_SCORER, default_report_contexts
from losscraft.testing.builders import recipe_toml

STAGE = {"name": "main", "max_steps": 1, "batch_size": 2,
         "data": [{"plugin": "toy_dialogs", "count": 4}], "terms": [{"plugin": "nll"}]}


def _recipe(tmp_path, report, **tables):
    path = tmp_path / "recipe.toml"
    path.write_text(recipe_toml(stages=[STAGE], run={"output_dir": str(tmp_path / "run")},
                                report=report, **tables), encoding="utf-8")
    return load_recipe(path)


def test_misspelt_summary_scorer_fails_validate_at_its_key(tmp_path, registry):
    recipe = _recipe(tmp_path, {"second_scorer": {"plugin": "safety_jugde"}})
    with pytest.raises(RecipeError) as err:
        validate_recipe(recipe, registry)
    assert err.value.key == "report.second_scorer.plugin"
    assert "did you mean 'safety_judge'" in str(err.value)


def test_misspelt_summary_contexts_fail_validate(tmp_path, registry):
    recipe = _recipe(tmp_path, {"casual_contexts": {"plugin": "daily_dialogue"}})
    with pytest.raises(RecipeError) as err:
        validate_recipe(recipe, registry)
    assert err.value.key == "report.casual_contexts.plugin"


def test_summary_defaults_are_built(tmp_path, registry):
    built = build_recipe(_recipe(tmp_path, {"enabled": True}), registry)
    report = built.report
    assert report.scorer_spec.plugin == DEFAULT_SCORER and report.scorer is not None
    spec, source = report.contexts["risky"]
    assert (spec.plugin, spec.params) == (default_report_contexts().plugin,
                                          default_report_contexts().params)
    assert source is not None and "casual" not in report.contexts
    assert any(note.startswith("summary: scorer safety_judge") for note in built.notes())


def test_summary_shares_the_recipes_scorer_and_reranker(tmp_path, registry):
    recipe = _recipe(tmp_path, {"enabled": True}, scorer={"plugin": "profanity_check"})
    built = build_recipe(recipe, registry)
    assert built.report.scorer is built.scorer


def test_disabled_report_builds_nothing(tmp_path, registry):
    built = build_recipe(_recipe(tmp_path, {"enabled": False}), registry)
    assert built.report is None
