"""Pytest fixtures for plugin tests. Enable them in your ``conftest.py``::

    pytest_plugins = ["losscraft.testing.fixtures"]
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def tiny():
    """The tiny model and tokenizer (`losscraft.plugins.protocols.LoadedModel`), seed 0."""
    from losscraft.testing.builders import tiny_loaded

    return tiny_loaded(0)


@pytest.fixture
def make_batch():
    """``make_batch(tokenizer, examples=None, pack_negatives=True, ...)`` -> a collated `Batch`
    (default: four toy examples with safe, unsafe and unlabelled rows and negatives)."""
    from losscraft.testing.builders import make_batch as build

    return build


@pytest.fixture
def make_context():
    """``make_context(model, batch, experts=None, tokenizer=None, ...)`` -> a `StepContext`."""
    from losscraft.testing.builders import make_context as build

    return build


@pytest.fixture
def write_recipe(tmp_path):
    """``write_recipe(terms=[...], data=[...], experts={...}, name="recipe", **stage)`` -> the
    path of a one-stage tiny-model recipe written under ``tmp_path`` (``stages=[...]``,
    ``run={...}``, ``tables={...}`` as `losscraft.testing.builders.write_recipe`)."""
    from losscraft.testing.builders import write_recipe as write

    def writer(**kwargs):
        return write(tmp_path, **kwargs)

    return writer


@pytest.fixture
def testing_registry():
    """A fresh process registry (every installed plugin) plus the ``testing_dialogs`` source;
    the process registry is reloaded afterwards."""
    from losscraft.plugins.registry import get_registry
    from losscraft.testing.toys import ensure_testing_plugin

    registry = get_registry(reload=True)
    ensure_testing_plugin(registry)
    yield registry
    get_registry(reload=True)
