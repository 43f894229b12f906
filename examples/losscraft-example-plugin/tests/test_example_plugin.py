"""The losscraft contracts for the example components, and a recipe that uses all three."""

import pytest

from losscraft.errors import RecipeError
from losscraft.plugins.registry import get_registry
from losscraft.testing import check_data_source, check_objective, check_scorer


@pytest.fixture
def quotes_file(tmp_path):
    path = tmp_path / "quotes.tsv"
    path.write_text("# context<TAB>reply\nhi || how are you?\tFine, thanks!\n"
                    "i lied to my mum\tMaybe tell her the truth; she'll appreciate it.\n",
                    encoding="utf-8")
    return path


def test_registered_through_entry_points():
    registry = get_registry(reload=True)
    assert not registry.failures, [p.error for p in registry.failures]
    assert registry.get("objective", "length_penalised_nll").distribution == \
        "losscraft-example-plugin"


def test_loss_contract(tmp_path):
    check_objective("length_penalised_nll", {"per_token": 0.05}, tmp_path=tmp_path)


def test_source_contract(tmp_path, quotes_file):
    examples = check_data_source("quotes", {"path": str(quotes_file)}, tmp_path=tmp_path)
    assert examples[0].history == ["hi", "how are you?"]


def test_scorer_contract():
    check_scorer("shouting", {"gamma": 2.0})


def test_recipe_validates_with_key_paths(write_recipe, quotes_file, testing_registry):
    from losscraft.recipe import load_recipe, validate_recipe

    path = write_recipe(terms=[{"plugin": "length_penalised_nll", "per_token": -1.0}],
                        data=[{"plugin": "quotes", "path": str(quotes_file)}])
    with pytest.raises(RecipeError) as err:
        validate_recipe(load_recipe(path), testing_registry)
    assert err.value.key.endswith("per_token")
