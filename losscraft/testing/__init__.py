"""`losscraft.testing`: what a plugin author needs to test a component the way losscraft does.

Contract checks, one per kind — call them on your own component with your own parameters::

    from losscraft.testing import check_objective

    def test_my_loss(tmp_path):
        check_objective("length_penalised_nll", {"per_token": 0.1}, tmp_path=tmp_path)

`check_objective` (scalar, finite, gradients reach the trainable parameters, exact under
gradient accumulation, each metric reduced over micro-batches as its ``summed`` declaration
says, finite under the gradient-norm penalty, exact resume),
`check_data_source` (valid `Example`s, deterministic, a clear error on a bad path),
`check_scorer` (probabilities in [0, 1], batch == one by one), `check_reranker`,
`check_rot_generator`, `check_model_provider`. Each raises `ContractError` (an
``AssertionError``) naming the broken promise.

Pytest fixtures (``pytest_plugins = ["losscraft.testing.fixtures"]`` in your ``conftest.py``):
``tiny`` (the tiny model + tokenizer), ``make_batch``, ``make_context``, ``write_recipe`` and
``testing_registry`` (the installed plugins plus the ``testing_dialogs`` data source). The same
helpers are importable from here for use outside pytest, as is `recipe_toml` (the text of any
recipe, several stages included, built from dicts; `write_recipe` writes one on the tiny model).
"""

from losscraft.testing.builders import (make_batch, make_context, recipe_toml, tiny_loaded,
                                        write_recipe)
from losscraft.testing.contracts import (ContractError, build, check_data_source,
                                         check_model_provider, check_objective, check_reranker,
                                         check_rot_generator, check_scorer)
from losscraft.testing.toys import (SOURCE_NAME, TestingDialogs, ensure_testing_plugin,
                                    toy_examples)

#: kind -> contract check
CHECKS = {"objective": check_objective, "data_source": check_data_source,
          "scorer": check_scorer, "reranker": check_reranker,
          "rot_generator": check_rot_generator, "model": check_model_provider}

__all__ = ["CHECKS", "ContractError", "SOURCE_NAME", "TestingDialogs", "build",
           "check_data_source", "check_model_provider", "check_objective", "check_reranker",
           "check_rot_generator", "check_scorer", "ensure_testing_plugin", "make_batch",
           "make_context", "recipe_toml", "tiny_loaded", "toy_examples", "write_recipe"]
