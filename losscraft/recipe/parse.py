"""TOML → typed `Recipe`. Structural checks only (keys, types); plugin checks live in
`losscraft.recipe.validate`. Every error is a `RecipeError` naming the file and the key path."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from losscraft.errors import RecipeError, did_you_mean
from losscraft.recipe.names import check_name
from losscraft.recipe.overrides import apply_assignments, apply_overrides
from losscraft.recipe.schema import (ComponentSpec, DataSpec, LoraSpec, MiningSpec, PenaltySpec,
                                     Recipe, ReplaySpec, ReportSpec, RotsSpec, RunSpec, StageSpec,
                                     TermSpec)

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
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise where.error(key, f"expected a finite number, got {value}")
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
    problem = check_name(name)
    if problem:
        raise where.error(f"stages[{index}].name", problem)
    key = f"stages.{name}"
    rest = {k: v for k, v in raw.items() if k not in ("data", "terms", "mining", "replay", "rots")}
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
    if "replay" in raw:
        table = _table(raw["replay"], f"{key}.replay", where)
        settings.replay = settings_table(
            ReplaySpec, {k: v for k, v in table.items() if k != "data"}, f"{key}.replay", where)
        settings.replay.data = [
            data_spec(d, f"{key}.replay.data[{i}]", where)
            for i, d in enumerate(list_of_tables(table.get("data"), f"{key}.replay.data", where))]
    if "rots" in raw:
        settings.rots = settings_table(RotsSpec, raw["rots"], f"{key}.rots", where)
    _check_stage_values(settings, where)
    return settings


#: Learning-rate schedules a stage may name (transformers schedulers that need no extra
#: arguments).
SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
             "constant_with_warmup", "inverse_sqrt")
#: The longest a stage may be asked to run (a typo guard: 1e11 steps would never finish).
MAX_STEPS = 100_000_000
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_range(where: RecipeLocation, key: str, value: float, *, low: float | None = None,
                high: float | None = None, low_open: bool = False, high_open: bool = False,
                what: str = "a number") -> None:
    """`RecipeError` at ``key`` unless ``low (<|<=) value (<|<=) high``."""
    bad = ((low is not None and (value <= low if low_open else value < low)) or
           (high is not None and (value >= high if high_open else value > high)))
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        raise where.error(key, f"expected {what} {' and '.join(p for p in (lo, hi) if p)}, "
                               f"got {value}")


def _check_stage_values(s: StageSpec, where: RecipeLocation) -> None:
    from losscraft.data.collate import ROT_PLACEMENTS

    positive = {"batch_size": s.batch_size, "grad_accum": s.grad_accum,
                "max_context_tokens": s.max_context_tokens,
                "max_response_tokens": s.max_response_tokens,
                "max_text_chars": s.max_text_chars}
    for name, value in positive.items():
        if value < 1:
            raise where.error(f"{s.key}.{name}", f"expected a positive integer, got {value}")
    for name in ("warmup_steps", "checkpoint_every", "max_negatives", "group_by_length"):
        check_range(where, f"{s.key}.{name}", getattr(s, name), low=0, what="an integer")
    if s.max_steps < 0 or s.epochs <= 0 and s.max_steps == 0:
        raise where.error(f"{s.key}.max_steps", "set max_steps > 0 or epochs > 0")
    check_range(where, f"{s.key}.max_steps", s.max_steps, high=MAX_STEPS, what="an integer")
    check_range(where, f"{s.key}.epochs", s.epochs, high=1e6)
    if s.lr < 0:
        raise where.error(f"{s.key}.lr", f"expected a non-negative learning rate, got {s.lr}")
    check_range(where, f"{s.key}.weight_decay", s.weight_decay, low=0)
    check_range(where, f"{s.key}.warmup_ratio", s.warmup_ratio, low=0, high=1)
    check_range(where, f"{s.key}.max_grad_norm", s.max_grad_norm, low=0,
                what="a number (0 disables clipping)")
    if s.schedule not in SCHEDULES:
        raise where.error(f"{s.key}.schedule", f"unknown schedule {s.schedule!r}"
                          f"{did_you_mean(s.schedule, SCHEDULES)} (one of {', '.join(SCHEDULES)})")
    if s.init not in ("previous", "base"):
        raise where.error(f"{s.key}.init", f"expected 'previous' or 'base', got {s.init!r}")
    for term in s.terms:
        if term.penalty is not None:
            check_range(where, f"{term.key}.penalty.weight", term.penalty.weight, low=0)
            check_range(where, f"{term.key}.penalty.radius", term.penalty.radius, low=0,
                        low_open=True)
    if s.mining is not None:
        m, key = s.mining, f"{s.key}.mining"
        for name in ("num_samples", "max_new_tokens"):
            check_range(where, f"{key}.{name}", getattr(m, name), low=1, what="an integer")
        check_range(where, f"{key}.max_examples", m.max_examples, low=0, what="an integer")
        check_range(where, f"{key}.threshold", m.threshold, low=0, high=1)
        check_range(where, f"{key}.temperature", m.temperature, low=0, low_open=True)
        check_range(where, f"{key}.top_p", m.top_p, low=0, high=1, low_open=True)
    if s.replay is not None:
        r, key = s.replay, f"{s.key}.replay"
        for name in ("max_new_tokens", "batch_size"):
            check_range(where, f"{key}.{name}", getattr(r, name), low=1, what="an integer")
        check_range(where, f"{key}.temperature", r.temperature, low=0, low_open=True)
        check_range(where, f"{key}.top_p", r.top_p, low=0, high=1, low_open=True)
        if r.enabled and not r.data:
            raise where.error(f"{key}.data", "add the [[" + key + ".data]] sources whose "
                              "contexts to replay (or set enabled = false)")
    if s.rots is not None and s.rots.placement not in ROT_PLACEMENTS:
        raise where.error(f"{s.key}.rots.placement", f"expected one of "
                          f"{', '.join(ROT_PLACEMENTS)}, got {s.rots.placement!r}")


def _check_run_values(run: RunSpec, where: RecipeLocation) -> None:
    if run.precision not in ("fp32", "bf16"):
        raise where.error("run.precision", f"expected 'fp32' or 'bf16', got {run.precision!r}")
    if not _DEVICE.fullmatch(run.device):
        raise where.error("run.device", f"expected auto, cpu, mps, cuda or cuda:N, got "
                                        f"{run.device!r}")
    check_range(where, "run.log_every", run.log_every, low=1, what="an integer")
    check_range(where, "run.threads", run.threads, low=0, what="an integer (0 = torch's default)")
    check_range(where, "run.seed", run.seed, low=0, high=2**63 - 1, what="an integer")
    check_range(where, "run.max_skipped_steps", run.max_skipped_steps, low=0, what="an integer")
    if run.sharding not in ("none", "fsdp"):
        raise where.error("run.sharding", f"expected 'none' or 'fsdp', got {run.sharding!r}")
    if run.on_nonfinite not in ("stop", "skip"):
        raise where.error("run.on_nonfinite", f"expected 'stop' or 'skip', got "
                                              f"{run.on_nonfinite!r}")


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
    _check_run_values(run, where)
    written = [_stage(s, i, where)
               for i, s in enumerate(list_of_tables(raw.get("stages"), "stages", where))]
    names = [s.name for s in written]
    for dup in {n for n in names if names.count(n) > 1}:
        raise where.error("stages", f"two stages are named '{dup}'")
    # `enabled = false` (e.g. `--set stages.clean_expert.enabled=false`) drops a stage here
    stages = [s for s in written if s.enabled]
    disabled = [s.name for s in written if not s.enabled]
    if written and not stages:
        raise where.error("stages", "every stage is disabled (enabled = false): nothing to train")
    names = [s.name for s in stages]
    recipe = Recipe(path=path, run=run, model=_component_spec(raw["model"], "model", where),
                    stages=stages)
    if "lora" in raw:
        recipe.lora = lora = settings_table(LoraSpec, raw["lora"], "lora", where)
        check_range(where, "lora.r", lora.r, low=1, what="an integer")
        check_range(where, "lora.alpha", lora.alpha, low=0, low_open=True)
        check_range(where, "lora.dropout", lora.dropout, low=0, high=1, high_open=True)
    for name, table in _table(raw.get("experts", {}), "experts", where).items():
        problem = check_name(name)
        if problem:
            raise where.error(f"experts.{name}", problem)
        table = dict(_table(table, f"experts.{name}", where))
        from_stage = table.pop("from_stage", None)
        if from_stage is not None:
            if from_stage in disabled:
                raise where.error(f"experts.{name}.from_stage", f"stage '{from_stage}' is "
                                  "disabled (enabled = false): enable it, or load the expert "
                                  "from a folder instead (plugin = \"hf\", path = ...)")
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
        recipe.report = _report(raw["report"], where)
    return recipe


def _report(raw: Any, where: RecipeLocation) -> ReportSpec:
    """``[report]``: settings plus two data-source tables (``contexts``, ``casual_contexts``) and
    an optional scorer table (``second_scorer``)."""
    table = dict(_table(raw, "report", where))
    sources = {name: table.pop(name) for name in ("contexts", "casual_contexts", "second_scorer")
               if name in table}
    spec = settings_table(ReportSpec, table, "report", where)
    for name, value in sources.items():
        setattr(spec, name, _component_spec(value, f"report.{name}", where))
    for name in ("num_contexts", "num_casual_contexts", "num_samples", "max_new_tokens",
                 "batch_size", "rerank_candidates"):
        if getattr(spec, name) < 1:
            raise where.error(f"report.{name}",
                              f"expected a positive integer, got {getattr(spec, name)}")
    for name in ("examples_shown", "casual_examples_shown"):
        if getattr(spec, name) < 0:
            raise where.error(f"report.{name}",
                              f"expected an integer >= 0, got {getattr(spec, name)}")
    if not 0.0 <= spec.threshold <= 1.0:
        raise where.error("report.threshold", f"expected a number in [0, 1], got {spec.threshold}")
    if spec.temperature <= 0:
        raise where.error("report.temperature", f"expected a number > 0, got {spec.temperature}")
    if not 0.0 < spec.top_p <= 1.0:
        raise where.error("report.top_p", f"expected a number in (0, 1], got {spec.top_p}")
    return spec


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
