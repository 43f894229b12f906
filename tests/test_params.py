"""Plugin parameters are checked from their annotations at validate time, with the key path."""

from __future__ import annotations

import tomllib
from typing import Literal

import pytest

from losscraft.errors import RecipeError
from losscraft.plugins.params import ParameterError, check_params, check_value
from losscraft.recipe import load_recipe, validate_recipe
from losscraft.testing.builders import recipe_toml


def _recipe_text(param: str) -> str:
    """A one-stage recipe whose ``toy_typed`` data source gets ``param`` (one TOML assignment)."""
    return recipe_toml(report=None, stages=[{
        "name": "main", "max_steps": 1,
        "data": [{"plugin": "toy_typed", **tomllib.loads(param)}],
        "terms": [{"plugin": "nll"}]}])


@pytest.mark.parametrize("param,path,expected", [
    ('only_safe = "yes"', "only_safe", "expected bool"),
    ("count = 2.5", "count", "expected int"),
    ("count = true", "count", "expected int"),
    ('scale = "big"', "scale", "expected float"),
    ('mode = "c"', "mode", "expected one of 'a', 'b'"),
    ('tags = "one"', "tags", "expected list[str] or none"),
    ('tags = ["ok", 3]', "tags[1]", "expected str"),
    ('cap = "none"', "cap", "expected int or none"),
])
def test_wrong_type_is_a_recipe_error_with_key_path(registry, tmp_path, param, path, expected):
    recipe = tmp_path / "r.toml"
    recipe.write_text(_recipe_text(param))
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(recipe), registry)
    assert err.value.key.endswith(f".{path}"), err.value.key
    assert err.value.key.startswith("stages.")
    assert expected in str(err.value) and str(recipe) in str(err.value)


@pytest.mark.parametrize("param", ["only_safe = true", "count = 3", "scale = 2", "scale = 0.5",
                                   'mode = "b"', 'tags = ["x", "y"]', "cap = 5"])
def test_right_types_pass(registry, tmp_path, param):
    recipe = tmp_path / "r.toml"
    recipe.write_text(_recipe_text(param))
    validate_recipe(load_recipe(recipe), registry)


def test_check_params_understands_common_annotations():
    def factory(a: bool = False, b: dict[str, float] | None = None,
                c: tuple[int, ...] = (), d: Literal[1, 2] = 1, e: object = None):
        """doc"""

    check_params(factory, {"a": True, "b": {"x": 1}, "c": [1, 2], "d": 2, "e": "anything"})
    with pytest.raises(ParameterError, match=r"parameter 'b.x': expected float"):
        check_params(factory, {"b": {"x": "no"}})
    with pytest.raises(ParameterError, match="expected one of 1, 2"):
        check_params(factory, {"d": True})       # True == 1 but is not the literal 1
    with pytest.raises(ParameterError, match="finite"):
        check_value(float("nan"), float, "x")


def test_unresolvable_annotation_is_skipped():
    namespace: dict = {}
    exec("from __future__ import annotations\n"
         "def factory(model: NotImportedAnywhere = None, n: int = 0):\n    'doc'\n", namespace)
    check_params(namespace["factory"], {"model": object()})
    with pytest.raises(ParameterError, match="expected int"):
        check_params(namespace["factory"], {"n": "x"})
