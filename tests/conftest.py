"""Shared fixtures: a registry with a toy data source registered from this test package, and a
tiny recipe writer. Tests never load the embedded 135M model unless marked ``integration``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ASSETS = Path(__file__).parent / "assets"
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def registry():
    """The process registry plus the test-only plugin `toy_plugin` (registered from code)."""
    import toy_plugin
    from losscraft.plugins.registry import get_registry

    reg = get_registry(reload=True)
    reg.add_plugin(toy_plugin, "toy_plugin")
    yield reg
    get_registry(reload=True)


@pytest.fixture
def tiny_recipe(tmp_path):
    """Write a tiny one-stage recipe (toy data, tiny model) and return a function that writes
    variants: ``tiny_recipe(extra_toml="...", **stage_overrides)``."""

    def write(body: str | None = None, name: str = "tiny.toml") -> Path:
        path = tmp_path / name
        path.write_text(body if body is not None else TINY_RECIPE.format(out=tmp_path / "run"))
        return path

    return write


TINY_RECIPE = """
[run]
seed = 3
output_dir = "{out}"

[model]
plugin = "tiny"

[[stages]]
name = "main"
max_steps = 4
batch_size = 2
grad_accum = 2
lr = 1e-2
warmup_steps = 1
max_context_tokens = 48
max_response_tokens = 16

  [[stages.data]]
  plugin = "toy_dialogs"
  count = 12

  [[stages.terms]]
  plugin = "nll"

[report]
enabled = false
"""
