"""Small things a loss or component test needs: the tiny model and tokenizer, collated batches,
`StepContext`s, and recipes: as TOML text from dicts (`recipe_toml`) or written to disk
(`write_recipe`)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
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


#: ``[model]`` of the tiny Llama: `recipe_toml`'s default model.
TINY_MODEL: Mapping[str, Any] = MappingProxyType({"plugin": "tiny"})
#: ``[report]`` with the after-run report off: `recipe_toml`'s default report.
NO_REPORT: Mapping[str, Any] = MappingProxyType({"enabled": False})

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _toml(value: Any) -> str:
    """One TOML value: str, path, bool, int, float, a list of those or an inline table."""
    if isinstance(value, Mapping):
        items = (f"{_key(k)} = {_toml(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)  # true/false, integers and floats are written alike in TOML
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _is_array_of_tables(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) > 0
            and all(isinstance(v, Mapping) for v in value))


def _table_lines(path: tuple[str, ...], table: Mapping[str, Any], pad: str,
                 nested: bool) -> list[str]:
    """The body of table ``path``: its plain keys (indented by ``pad``), then its sub-tables and
    arrays of tables in order. Tables inside an element of an array of tables (``nested``) are
    indented two spaces a level, as in the shipped recipes."""
    lines = [f"{pad}{_key(k)} = {_toml(v)}" for k, v in table.items()
             if v is not None and not isinstance(v, Mapping) and not _is_array_of_tables(v)]
    for k, v in table.items():
        sub = (*path, _key(k))
        sub_pad = "  " * (len(sub) - 1) if nested else ""
        if isinstance(v, Mapping):
            plain = [x for x in v.values() if x is not None and not isinstance(x, Mapping)
                     and not _is_array_of_tables(x)]
            if plain or not v:  # a table of tables needs no header of its own
                lines += ["", f"{sub_pad}[{'.'.join(sub)}]"]
            lines += _table_lines(sub, v, sub_pad, nested)
        elif _is_array_of_tables(v):
            for item in v:
                lines += ["", f"{sub_pad}[[{'.'.join(sub)}]]",
                          *_table_lines(sub, item, sub_pad, True)]
    return lines


def recipe_toml(*, stages: Sequence[Mapping[str, Any]], run: Mapping[str, Any] | None = None,
                model: Mapping[str, Any] | None = TINY_MODEL,
                experts: Mapping[str, Mapping[str, Any]] | None = None,
                report: Mapping[str, Any] | None = NO_REPORT,
                **tables: Mapping[str, Any] | None) -> str:
    """The text of a recipe with exactly these tables, written in the order ``[run]``,
    ``[model]``, ``tables`` (``lora=``, ``scorer=``, ``reranker=``, ``rot_generator=``, ...),
    ``[experts.<name>]``, ``[[stages]]``, ``[report]``. Nothing is added: a table or key given
    as ``None`` is left out (``report=None``: no ``[report]`` table).

    Each stage is a dict of its keys. In any table a dict value becomes a sub-table (a stage's
    ``"mining"``, ``"rots"`` or ``"replay"``, a term's ``"penalty"``) and a list of dicts an
    array of tables (a stage's ``"data"`` and ``"terms"``, a replay's ``"data"``); paths
    (`os.PathLike`) are written as strings and keys keep their order. For example::

        recipe_toml(run={"seed": 1, "output_dir": tmp_path / "run"},
                    stages=[{"name": "main", "max_steps": 2,
                             "data": [{"plugin": "toy_dialogs", "count": 4}],
                             "terms": [{"plugin": "nll", "penalty": {"weight": 0.1}}]}])
    """
    recipe = {"run": run, "model": model, **tables, "experts": experts, "stages": list(stages),
              "report": report}
    lines = _table_lines((), {k: v for k, v in recipe.items() if v is not None}, "", False)
    return "\n".join(lines).lstrip("\n") + "\n"


def write_recipe(folder: str | Path, *, terms: Sequence[dict] = ({"plugin": "nll"},),
                 data: Sequence[dict] = ({"plugin": SOURCE_NAME, "count": 8},),
                 experts: dict[str, dict] | None = None, name: str = "recipe",
                 seed: int = 7, stages: Sequence[Mapping[str, Any]] | None = None,
                 run: Mapping[str, Any] | None = None,
                 tables: Mapping[str, Mapping[str, Any] | None] | None = None,
                 **stage: Any) -> Path:
    """Write a recipe on the tiny model (on the CPU) to ``folder/<name>.toml`` (output in
    ``folder/<name>``) and return its path.

    One stage ``main`` by default: ``terms``/``data``: its component tables; ``stage``: its
    keys (defaults: 2 steps, batch 2, accumulation 2, lr 1e-2, 48 context / 12 response tokens,
    2 negatives). ``stages``: the stages instead, as dicts in the form `recipe_toml` takes
    (then ``terms``, ``data`` and stage keys are not allowed). ``experts``: name -> table.
    ``run``: more ``[run]`` keys (over ``seed``, ``output_dir`` and ``device``). ``tables``:
    more top-level tables by name, such as ``{"lora": {"r": 2}, "scorer": {"plugin": ...}}``;
    ``"model"`` and ``"report"`` there replace the tiny model and the switched-off report.
    """
    folder = Path(folder)
    if stages is None:
        settings = {"max_steps": 2, "batch_size": 2, "grad_accum": 2, "lr": 1e-2,
                    "max_context_tokens": 48, "max_response_tokens": 12, "max_negatives": 2,
                    **stage}
        stages = [{"name": "main", **settings, "data": list(data), "terms": list(terms)}]
    elif stage or tuple(terms) != ({"plugin": "nll"},) or \
            tuple(data) != ({"plugin": SOURCE_NAME, "count": 8},):
        raise TypeError("write_recipe: give either stages= or terms=/data=/stage keys, not both")
    text = recipe_toml(run={"seed": seed, "output_dir": folder / name, "device": "cpu",
                            **(run or {})},
                       experts=experts, stages=stages, **(tables or {}))
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path
