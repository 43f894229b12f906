"""TOML → typed `Recipe`. Structural checks only (keys, types); plugin checks live in
`losscraft.recipe.validate`. Every error is a `RecipeError` naming the file and the key path."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from losscraft.errors import RecipeError, did_you_mean
from losscraft.recipe.overrides import apply_assignments, apply_overrides
from losscraft.recipe.schema import (ComponentSpec, DataSpec, LoraSpec, MiningSpec, PenaltySpec,
                                     Recipe, ReportSpec, RotsSpec, RunSpec, StageSpec, TermSpec)

TOP_LEVEL = ("run", "model", "lora", "experts", "stages", "scorer", "reranker", "rot_generator",
             "report", "profiles")
COMPONENT_CORE_KEYS = {DataSpec: ("plugin", "limit"),
                       TermSpec: ("plugin", "name", "weight", "penalty")}


class RecipeLocation:
    """The recipe file being parsed; builds `RecipeError`s that name it and a key path."""

    def __init__(self, file: str):
        self.file = file

    def error(self, key: str, message: str) -> RecipeError:
        return RecipeError(message, file=self.file, key=key)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "none")


def _check_value(value: Any, tp: Any, key: str, where: RecipeLocation) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _check_value(value, args[0], key, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise where.error(key, f"expected a list of {_type_name(item)}, got {value!r}")
        return [_check_value(v, item, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict or tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            got = f"{type(value).__name__} {value!r}"
            raise where.error(key, f"expected {_type_name(tp)}, got {got}")
        return value
    return value


def unknown_key_error(key: str, name: str, allowed: list[str],
                      where: RecipeLocation) -> RecipeError:
    """``name`` is not a key of table ``key`` (``""``: the top level)."""
    return where.error(f"{key}.{name}" if key else name,
                       f"unknown key '{name}' in [{key or 'recipe'}]{did_you_mean(name, allowed)} "
                       f"(allowed: {', '.join(allowed)})")


def _table(raw: Any, key: str, where: RecipeLocation) -> dict:
    if not isinstance(raw, dict):
        raise where.error(key, f"expected a table, got {type(raw).__name__} {raw!r}")
    return raw


def settings_table(cls: type, raw: Any, key: str, where: RecipeLocation) -> Any:
    """A plain settings table → dataclass ``cls`` (no plugin parameters allowed)."""
    raw = _table(raw, key, where)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in ("key", "params")]
    values = {}
    for name, value in raw.items():
        if name not in names:
            raise unknown_key_error(key, name, names, where)
        values[name] = _check_value(value, hints[name], f"{key}.{name}", where)
    return cls(**values)


def _component(raw: Any, key: str, where: RecipeLocation,
               core: tuple[str, ...] = ("plugin",)) -> dict:
    """Split a component table into core keys and plugin params."""
    raw = _table(raw, key, where)
    plugin = raw.get("plugin")
    if not isinstance(plugin, str) or not plugin:
        raise where.error(f"{key}.plugin", "missing 'plugin = \"<name>\"' (which plugin to use)")
    return {"core": {k: v for k, v in raw.items() if k in core},
            "params": {k: v for k, v in raw.items() if k not in core}}


def _component_spec(raw: Any, key: str, where: RecipeLocation) -> ComponentSpec:
    parts = _component(raw, key, where)
    return ComponentSpec(parts["core"]["plugin"], parts["params"], key)


def _core_fields(cls: type, core: dict, key: str, where: RecipeLocation) -> dict:
    hints = typing.get_type_hints(cls)
    return {n: _check_value(v, hints[n], f"{key}.{n}", where) for n, v in core.items()}


def _term(raw: Any, key: str, where: RecipeLocation) -> TermSpec:
    parts = _component(raw, key, where, COMPONENT_CORE_KEYS[TermSpec])
    core = dict(parts["core"])
    penalty = core.pop("penalty", None)
    spec = TermSpec(params=parts["params"], key=key, **_core_fields(TermSpec, core, key, where))
    if penalty is not None:
        spec.penalty = settings_table(PenaltySpec, penalty, f"{key}.penalty", where)
        if spec.penalty.method not in ("exact", "finite_difference"):
            raise where.error(f"{key}.penalty.method", "expected 'exact' or 'finite_difference', "
                              f"got {spec.penalty.method!r}")
    spec.name = spec.name or spec.plugin
    return spec


def data_spec(raw: Any, key: str, where: RecipeLocation) -> DataSpec:
    parts = _component(raw, key, where, COMPONENT_CORE_KEYS[DataSpec])
    return DataSpec(params=parts["params"], key=key,
                    **_core_fields(DataSpec, parts["core"], key, where))


def list_of_tables(raw: Any, key: str, where: RecipeLocation) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise where.error(key, f"expected one or more [[{key}]] tables")
    return raw


def _stage(raw: Any, index: int, where: RecipeLocation) -> StageSpec:
    raw = _table(raw, f"stages[{index}]", where)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise where.error(f"stages[{index}].name", "every stage needs a name")
    key = f"stages.{name}"
    rest = {k: v for k, v in raw.items() if k not in ("data", "terms", "mining", "rots")}
    settings = settings_table(StageSpec, {**rest, "data": [], "terms": []}, key, where)
    settings.key = key
    data_tables = list_of_tables(raw.get("data"), f"{key}.data", where)
    term_tables = list_of_tables(raw.get("terms"), f"{key}.terms", where)
    settings.data = [data_spec(d, f"{key}.data[{i}]", where) for i, d in enumerate(data_tables)]
    settings.terms = [_term(t, f"{key}.terms[{i}]", where) for i, t in enumerate(term_tables)]
    names = [t.name for t in settings.terms]
    for dup in {n for n in names if names.count(n) > 1}:
        raise where.error(f"{key}.terms", f"two terms are named '{dup}': give one a 'name'")
    if "mining" in raw:
        settings.mining = settings_table(MiningSpec, raw["mining"], f"{key}.mining", where)
    if "rots" in raw:
        settings.rots = settings_table(RotsSpec, raw["rots"], f"{key}.rots", where)
    _check_stage_values(settings, where)
    return settings


def _check_stage_values(s: StageSpec, where: RecipeLocation) -> None:
    positive = {"batch_size": s.batch_size, "grad_accum": s.grad_accum,
                "max_context_tokens": s.max_context_tokens,
                "max_response_tokens": s.max_response_tokens}
    for name, value in positive.items():
        if value < 1:
            raise where.error(f"{s.key}.{name}", f"expected a positive integer, got {value}")
    if s.max_steps < 0 or s.epochs <= 0 and s.max_steps == 0:
        raise where.error(f"{s.key}.max_steps", "set max_steps > 0 or epochs > 0")
    if s.lr < 0:
        raise where.error(f"{s.key}.lr", f"expected a non-negative learning rate, got {s.lr}")
    if s.init not in ("previous", "base"):
        raise where.error(f"{s.key}.init", f"expected 'previous' or 'base', got {s.init!r}")


def parse_recipe(raw: dict, path: str) -> Recipe:
    """Build a `Recipe` from an already-loaded TOML mapping."""
    where = RecipeLocation(path)
    for name in raw:
        if name not in TOP_LEVEL:
            raise unknown_key_error("", name, list(TOP_LEVEL), where)
    if "model" not in raw:
        raise where.error("model", "missing [model] table (e.g. plugin = \"smollm2_embedded\")")
    run = settings_table(RunSpec, raw.get("run", {}), "run", where)
    run.name = run.name or Path(path).stem
    run.output_dir = run.output_dir or str(Path("runs") / run.name)
    if run.precision not in ("fp32", "bf16"):
        raise where.error("run.precision", f"expected 'fp32' or 'bf16', got {run.precision!r}")
    stages = [_stage(s, i, where)
              for i, s in enumerate(list_of_tables(raw.get("stages"), "stages", where))]
    names = [s.name for s in stages]
    for dup in {n for n in names if names.count(n) > 1}:
        raise where.error("stages", f"two stages are named '{dup}'")
    recipe = Recipe(path=path, run=run, model=_component_spec(raw["model"], "model", where),
                    stages=stages)
    if "lora" in raw:
        recipe.lora = settings_table(LoraSpec, raw["lora"], "lora", where)
    for name, table in _table(raw.get("experts", {}), "experts", where).items():
        table = dict(_table(table, f"experts.{name}", where))
        from_stage = table.pop("from_stage", None)
        if from_stage is not None:
            if from_stage not in names:
                raise where.error(f"experts.{name}.from_stage", f"no stage named '{from_stage}' "
                                  f"(stages: {', '.join(names)})")
            recipe.expert_from_stage[name] = from_stage
            table.setdefault("plugin", "hf")
        recipe.experts[name] = _component_spec(table, f"experts.{name}", where)
    for kind in ("scorer", "reranker", "rot_generator"):
        if kind in raw:
            setattr(recipe, kind, _component_spec(raw[kind], kind, where))
    if "report" in raw:
        table = dict(_table(raw["report"], "report", where))
        contexts = table.pop("contexts", None)
        recipe.report = settings_table(ReportSpec, table, "report", where)
        if contexts is not None:
            recipe.report.contexts = _component_spec(contexts, "report.contexts", where)
    return recipe


def read_recipe_mapping(path: str | Path, overrides: list[str] | None = None) -> dict:
    """A recipe file as a mapping: TOML read, ``--set`` overrides applied, then the profile
    ``run.profile`` selects (``[profiles.<name>]``), then the overrides again so that the command
    line wins. Shared by every kind of recipe."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", file=str(path))
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"not valid TOML: {exc}", file=str(path)) from None
    raw = apply_overrides(raw, overrides or [], file=str(path))
    profile = raw.get("run", {}).get("profile") if isinstance(raw.get("run"), dict) else None
    if profile:
        profiles = raw.get("profiles", {})
        if not isinstance(profiles, dict) or profile not in profiles:
            raise RecipeError(f"no [profiles.{profile}] table (profiles: "
                              f"{', '.join(profiles) if isinstance(profiles, dict) else 'none'})",
                              file=str(path), key="run.profile")
        raw = apply_assignments(raw, profiles[profile], file=str(path), where=f"profiles.{profile}")
        raw = apply_overrides(raw, overrides or [], file=str(path))
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (``KEY=VALUE`` strings) and parse a recipe file."""
    raw = read_recipe_mapping(path, overrides)
    recipe = parse_recipe(raw, str(path))
    recipe.raw = raw
    return recipe
