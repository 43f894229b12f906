"""Shared fixtures: a registry with a toy data source registered from this test package, and the
tiny recipe (`tiny_toml`, the `tiny_recipe` fixture). Tests never load the embedded 135M model
unless marked ``integration``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tests share no evaluation through the user's cache (the cache's own tests turn it on)
os.environ.setdefault("LOSSCRAFT_EVAL_CACHE", "0")

ASSETS = Path(__file__).parent / "assets"
sys.path.insert(0, str(Path(__file__).parent))

from losscraft.testing.builders import recipe_toml  # noqa: E402  (after the offline settings)


def registry_with(module, name: str):
    """A fixture body: the process registry reloaded with ``module`` added as plugin ``name``
    (registered from code), reloaded again afterwards (``yield from registry_with(...)``)."""
    from losscraft.plugins.registry import get_registry

    reg = get_registry(reload=True)
    reg.add_plugin(module, name)
    yield reg
    get_registry(reload=True)


@pytest.fixture
def registry():
    """The process registry plus the test-only plugin `toy_plugin` (registered from code)."""
    import toy_plugin

    yield from registry_with(toy_plugin, "toy_plugin")


#: stage ``main`` of the suite's tiny recipe: 4 steps of NLL on 12 toy dialogs
TINY_STAGE = {"name": "main", "max_steps": 4, "batch_size": 2, "grad_accum": 2, "lr": 1e-2,
              "warmup_steps": 1, "max_context_tokens": 48, "max_response_tokens": 16,
              "data": [{"plugin": "toy_dialogs", "count": 12}], "terms": [{"plugin": "nll"}]}


def tiny_toml(out, *, stage: dict | None = None, stages: list[dict] | None = None,
              **tables) -> str:
    """The suite's tiny recipe (seed 3, the tiny model, `TINY_STAGE`, no report) writing to
    ``out``. ``stage``: keys of stage ``main`` changed; ``stages``: the stages instead (compose
    them from `TINY_STAGE`); ``tables``: top-level tables for `recipe_toml`, e.g. ``lora=``,
    ``experts=``, ``model=``, ``report=``."""
    if stages is None:
        stages = [{**TINY_STAGE, **(stage or {})}]
    elif stage is not None:
        raise TypeError("tiny_toml: give stage= or stages=, not both")
    return recipe_toml(run={"seed": 3, "output_dir": out}, stages=stages, **tables)


#: `tiny_toml` as text with an ``{out}`` placeholder, for tests that edit the TOML itself
TINY_RECIPE = tiny_toml("{out}")


@pytest.fixture
def tiny_recipe(tmp_path):
    """A function writing the tiny recipe (output in ``tmp_path/run``) to ``tmp_path/<name>``
    and returning its path: ``tiny_recipe(name="tiny.toml", **changes)``, ``changes`` as for
    `tiny_toml`."""

    def write(name: str = "tiny.toml", **changes) -> Path:
        path = tmp_path / name
        path.write_text(tiny_toml(tmp_path / "run", **changes))
        return path

    return write


def load_tiny_recipe(tmp_path: Path, extra=(), *, name: str = "run", body: str | None = None):
    """The tiny recipe (or ``body``, a TOML text with an ``{out}``-free body) written to
    ``tmp_path/<name>.toml`` with its output in ``tmp_path/<name>``, loaded with the
    ``extra`` ``KEY=VALUE`` overrides."""
    from losscraft.recipe import load_recipe

    path = tmp_path / f"{name}.toml"
    path.write_text(body or TINY_RECIPE.format(out=tmp_path / name))
    return load_recipe(path, list(extra))


def train_run(recipe, registry, *, resume: bool = False, **kw):
    """Train ``recipe`` without a progress bar (``kw`` go to `Trainer`); its `RunResult`."""
    from losscraft.trainer import Trainer

    return Trainer(recipe, registry=registry, show_progress=False, **kw).run(resume=resume)


def logged_steps(metrics_path: Path) -> list[int]:
    """The step numbers of a ``metrics.jsonl``'s step records (events left out)."""
    import json

    return [r["step"] for r in map(json.loads, metrics_path.read_text().splitlines())
            if "event" not in r]
