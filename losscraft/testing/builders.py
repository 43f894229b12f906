"""Small things a loss or component test needs: the tiny model and tokenizer, collated batches,
`StepContext`s, and recipes written to disk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from losscraft.plugins.protocols import LoadedModel
from losscraft.core.context import StepContext
from losscraft.types import Batch, Example
from losscraft.testing.toys import SOURCE_NAME, toy_examples


def tiny_loaded(seed: int = 0) -> LoadedModel:
    """The tiny Llama (259-token byte tokenizer with ChatML, eager attention): built in
    milliseconds, offline, the same weights for the same ``seed``."""
    from losscraft.models.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    return LoadedModel(tiny_model(len(tokenizer), seed=seed), tokenizer, f"tiny(seed={seed})")


def make_batch(tokenizer, examples: Sequence[Example] | None = None, *,
               pack_negatives: bool = True, max_negatives: int = 2,
               max_context_tokens: int = 48, max_response_tokens: int = 12) -> Batch:
    """``examples`` (default: four `toy_examples`) collated as the trainer would, negatives
    packed after their shared context."""
    from losscraft.data.collate import DialogCollator

    collator = DialogCollator(tokenizer, max_context_tokens=max_context_tokens,
                              max_response_tokens=max_response_tokens,
                              pack_negatives=pack_negatives, max_negatives=max_negatives)
    return collator(list(examples) if examples is not None else toy_examples(4))


def make_context(model, batch: Batch, *, experts: dict | None = None, tokenizer=None,
                 need_hidden_states: bool = False, seed: int = 0, **kwargs: Any) -> StepContext:
    """A `StepContext` for one micro-batch that is its own optimizer step."""
    return StepContext(model, batch, experts=experts or {}, tokenizer=tokenizer,
                       need_hidden_states=need_hidden_states,
                       generator=torch.Generator().manual_seed(seed), **kwargs)


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # str/int/float/bool/list are the same in TOML


def write_recipe(folder: str | Path, *, terms: Sequence[dict] = ({"plugin": "nll"},),
                 data: Sequence[dict] = ({"plugin": SOURCE_NAME, "count": 8},),
                 experts: dict[str, dict] | None = None, name: str = "recipe",
                 seed: int = 7, **stage: Any) -> Path:
    """Write a one-stage recipe on the tiny model to ``folder/<name>.toml`` (output in
    ``folder/<name>``) and return its path. ``terms``/``data``: component tables;
    ``experts``: name -> table; ``stage``: stage keys (defaults: 2 steps, batch 2, accumulation
    2, lr 1e-2)."""
    folder = Path(folder)
    settings = {"max_steps": 2, "batch_size": 2, "grad_accum": 2, "lr": 1e-2,
                "max_context_tokens": 48, "max_response_tokens": 12, "max_negatives": 2,
                **stage}
    lines = ["[run]", f"seed = {seed}", f"output_dir = {_toml(str(folder / name))}",
             'device = "cpu"', "", "[model]", 'plugin = "tiny"', ""]
    for expert, table in (experts or {}).items():
        lines += [f"[experts.{expert}]", *(f"{k} = {_toml(v)}" for k, v in table.items()), ""]
    lines += ["[[stages]]", 'name = "main"', *(f"{k} = {_toml(v)}" for k, v in settings.items())]
    for table in data:
        lines += ["", "  [[stages.data]]", *(f"  {k} = {_toml(v)}" for k, v in table.items())]
    for table in terms:
        lines += ["", "  [[stages.terms]]", *(f"  {k} = {_toml(v)}" for k, v in table.items())]
    lines += ["", "[report]", "enabled = false", ""]
    path = folder / f"{name}.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
