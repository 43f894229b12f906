"""TOML → `ClassifierRecipe`. Structural checks only (keys, types, ranges), with the same error
style as `losscraft.recipe`: a `RecipeError` naming the file and the key path, unknown keys with a
did-you-mean. Plugin and path checks live in `losscraft.recipe.classifier_validate`."""

from __future__ import annotations

import tomllib
from pathlib import Path

from losscraft.recipe.classifier_schema import (ClassifierRecipe, ClassifierRunSpec, ClassifierSpec,
                                         ClassifierTrainSpec, SplitSpec)
from losscraft.recipe.parse import (RecipeLocation, data_spec, list_of_tables, read_recipe_mapping,
                                     settings_table, unknown_key_error)

ARCHITECTURES = ("cross_encoder", "embedding_pair")
TOP_LEVEL = ("run", "classifier", "train", "data", "split", "eval_data", "profiles")


def is_classifier_recipe(raw: dict) -> bool:
    """True when a loaded TOML mapping is a classifier recipe (it has a ``[classifier]`` table)."""
    return isinstance(raw, dict) and isinstance(raw.get("classifier"), dict)


def is_classifier_recipe_file(path: str | Path) -> bool:
    """`is_classifier_recipe` of a file; false for a missing or invalid file (the ordinary recipe
    loader then reports what is wrong with it)."""
    try:
        return is_classifier_recipe(tomllib.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False


def _check(cond: bool, where: RecipeLocation, key: str, message: str) -> None:
    if not cond:
        raise where.error(key, message)


def _check_values(r: ClassifierRecipe, where: RecipeLocation) -> None:
    c, t = r.classifier, r.train
    _check(bool(c.encoder.strip()), where, "classifier.encoder",
           "expected \"minilm_embedded\", a local model folder or a hub id")
    _check(c.max_length >= 8, where, "classifier.max_length", f"expected >= 8, got {c.max_length}")
    _check(c.unsafe_index in (0, 1), where, "classifier.unsafe_index",
           f"expected 0 or 1, got {c.unsafe_index}")
    _check(not c.prosocial_head or c.unsafe_index == 1, where, "classifier.unsafe_index",
           "with prosocial_head = true the labels are safe (0), unsafe (1), prosocial (2): "
           f"unsafe_index must be 1, got {c.unsafe_index}")
    _check(c.architecture in ARCHITECTURES, where, "classifier.architecture",
           f"expected one of {list(ARCHITECTURES)}, got {c.architecture!r}")
    _check(c.context_turns >= 1, where, "classifier.context_turns",
           f"expected >= 1, got {c.context_turns}")
    for name in ("batch_size", "eval_batch_size"):
        value = getattr(t, name)
        _check(value >= 1, where, f"train.{name}", f"expected a positive integer, got {value}")
    _check(t.max_steps >= 0, where, "train.max_steps", f"expected >= 0, got {t.max_steps}")
    _check(t.max_steps > 0 or t.epochs > 0, where, "train.max_steps",
           "set max_steps > 0 or epochs > 0")
    _check(t.lr >= 0, where, "train.lr", f"expected a non-negative learning rate, got {t.lr}")
    _check(t.weight_decay >= 0, where, "train.weight_decay", f"expected >= 0, got {t.weight_decay}")
    _check(0 <= t.warmup_ratio < 1, where, "train.warmup_ratio",
           f"expected a fraction in [0, 1), got {t.warmup_ratio}")
    if r.split is not None:
        _check(0 < r.split.fraction < 1, where, "split.fraction",
               f"expected a fraction in (0, 1), got {r.split.fraction}")
        _check(r.split.by in ("dialogue", "example"), where, "split.by",
               f"expected 'dialogue' or 'example', got {r.split.by!r}")


def parse_classifier_recipe(raw: dict, path: str) -> ClassifierRecipe:
    """Build a `ClassifierRecipe` from an already-loaded TOML mapping."""
    where = RecipeLocation(path)
    for name in raw:
        if name not in TOP_LEVEL:
            raise unknown_key_error("", name, list(TOP_LEVEL), where)
    if "classifier" not in raw:
        raise where.error("classifier", "missing [classifier] table (e.g. encoder = "
                          "\"minilm_embedded\")")
    if "split" in raw and "eval_data" in raw:
        raise where.error("split", "give either [split] (hold out part of [[data]]) or "
                          "[[eval_data]] (explicit held-out sources), not both")
    run = settings_table(ClassifierRunSpec, raw.get("run", {}), "run", where)
    run.name = run.name or Path(path).stem
    run.output_dir = run.output_dir or str(Path("runs") / run.name)
    recipe = ClassifierRecipe(
        path=path, run=run,
        classifier=settings_table(ClassifierSpec, raw["classifier"], "classifier", where),
        train=settings_table(ClassifierTrainSpec, raw.get("train", {}), "train", where),
        data=[data_spec(d, f"data[{i}]", where)
              for i, d in enumerate(list_of_tables(raw.get("data"), "data", where))])
    if "eval_data" in raw:
        recipe.eval_data = [data_spec(d, f"eval_data[{i}]", where) for i, d in
                            enumerate(list_of_tables(raw["eval_data"], "eval_data", where))]
    else:
        recipe.split = settings_table(SplitSpec, raw.get("split", {}), "split", where)
    _check_values(recipe, where)
    return recipe


def load_classifier_recipe(path: str | Path, overrides: list[str] | None = None
                           ) -> ClassifierRecipe:
    """Read, override (``KEY=VALUE`` strings, as ``--set``) and parse a classifier recipe."""
    raw = read_recipe_mapping(path, overrides)
    recipe = parse_classifier_recipe(raw, str(path))
    recipe.raw = raw
    return recipe
