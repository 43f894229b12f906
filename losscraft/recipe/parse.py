"""TOML → typed recipes, in two dialects: a dialog-training `Recipe` (``[model]`` and
``[[stages]]``) and a `ClassifierRecipe` (a ``[classifier]`` table: trains a safety judge).
Structural checks only (keys, types; the dialog recipe's value ranges are in
`losscraft.recipe.values`); plugin checks live in `losscraft.recipe.instantiate` (and
`losscraft.judge.validate` for the classifier's encoder). Every error is a `RecipeError` naming the
file and the key path; a dialog recipe's problems are collected and raised together
(`parse_recipe_collecting` hands them to ``losscraft validate`` with what did parse)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from losscraft.errors import RecipeError
from losscraft.recipe.names import check_name
from losscraft.recipe.schema import (ClassifierRecipe, ClassifierRunSpec, ClassifierSpec,
                                     ClassifierTrainSpec, DataSpec, LoraSpec, MiningSpec,
                                     PenaltySpec, Recipe, ReplaySpec, RotsSpec, RunSpec, SplitSpec,
                                     StageSpec, TermSpec)
from losscraft.recipe.tables import (RecipeLocation, as_table, check_range, component_parts,
                                     core_fields, list_of_tables, raise_all, read_recipe_mapping,
                                     recipe_header, settings_table)
from losscraft.recipe.values import (check_run_values, check_stage_values, component_spec,
                                     report_spec)

TOP_LEVEL = ("run", "model", "lora", "experts", "stages", "scorer", "reranker", "rot_generator",
             "report", "profiles")
COMPONENT_CORE_KEYS = {DataSpec: ("plugin", "limit"),
                       TermSpec: ("plugin", "name", "weight", "penalty", "allow_negative_weight")}


_component_spec = component_spec


def _term(raw: Any, key: str, where: RecipeLocation) -> TermSpec:
    parts = component_parts(raw, key, where, COMPONENT_CORE_KEYS[TermSpec])
    core = dict(parts["core"])
    penalty = core.pop("penalty", None)
    spec = TermSpec(params=parts["params"], key=key, **core_fields(TermSpec, core, key, where))
    if spec.weight < 0 and not spec.allow_negative_weight:
        where.problems.append(where.error(
            f"{key}.weight", f"negative weight {spec.weight}: the term would be trained by "
            "gradient ascent; if that is meant, add allow_negative_weight = true to the term"))
    if penalty is not None:
        spec.penalty = settings_table(PenaltySpec, penalty, f"{key}.penalty", where)
        if spec.penalty.method not in ("exact", "finite_difference"):
            raise where.error(f"{key}.penalty.method", "expected 'exact' or 'finite_difference', "
                              f"got {spec.penalty.method!r}")
        if spec.penalty.difference not in ("central", "forward"):
            raise where.error(f"{key}.penalty.difference", "expected 'central' or 'forward', "
                              f"got {spec.penalty.difference!r}")
    spec.name = spec.name or spec.plugin
    return spec


def data_spec(raw: Any, key: str, where: RecipeLocation) -> DataSpec:
    parts = component_parts(raw, key, where, COMPONENT_CORE_KEYS[DataSpec])
    spec = DataSpec(params=parts["params"], key=key,
                    **core_fields(DataSpec, parts["core"], key, where))
    if spec.limit < 0:
        raise where.error(f"{key}.limit", f"expected an integer >= 0 (0 = every example), got "
                          f"{spec.limit}")
    return spec


def _each(where: RecipeLocation, items: list, build) -> list:
    """``build(i, item)`` of each item that builds (the others' problems collected)."""
    built = []
    for i, item in enumerate(items):
        with where.collect():
            built.append(build(i, item))
    return built


def _stage(raw: Any, index: int, where: RecipeLocation) -> StageSpec:
    raw = as_table(raw, f"stages[{index}]", where)
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
    tables: dict[str, list] = {"data": [], "terms": []}
    for part in tables:
        with where.collect():
            tables[part] = list_of_tables(raw.get(part), f"{key}.{part}", where)
    settings.data = _each(where, tables["data"],
                          lambda i, d: data_spec(d, f"{key}.data[{i}]", where))
    settings.terms = _each(where, tables["terms"],
                           lambda i, t: _term(t, f"{key}.terms[{i}]", where))
    names = [t.name for t in settings.terms]
    for dup in {n for n in names if names.count(n) > 1}:
        where.problems.append(where.error(f"{key}.terms", f"two terms are named '{dup}': give "
                                          "one a 'name'"))
    with where.collect():
        if "mining" in raw:
            settings.mining = settings_table(MiningSpec, raw["mining"], f"{key}.mining", where)
    with where.collect():
        if "replay" in raw:
            table = as_table(raw["replay"], f"{key}.replay", where)
            replay = settings_table(ReplaySpec, {k: v for k, v in table.items() if k != "data"},
                                    f"{key}.replay", where)
            replay.data = _each(where, list_of_tables(table.get("data"), f"{key}.replay.data",
                                                      where),
                                lambda i, d: data_spec(d, f"{key}.replay.data[{i}]", where))
            settings.replay = replay
    with where.collect():
        if "rots" in raw:
            settings.rots = settings_table(RotsSpec, raw["rots"], f"{key}.rots", where)
    check_stage_values(settings, where)
    return settings


def parse_recipe(raw: dict, path: str) -> Recipe:
    """Build a `Recipe` from an already-loaded TOML mapping; raises every structural problem at
    once (`RecipeError`, or `RecipeErrors` for several)."""
    recipe, problems = parse_recipe_collecting(raw, path)
    raise_all(problems)
    return recipe


def parse_recipe_collecting(raw: dict, path: str) -> tuple[Recipe | None, list[RecipeError]]:
    """``(recipe, problems)``: the recipe built from the parts that parsed (``None`` when its
    header or ``[model]`` does not) and every structural problem found — what ``losscraft
    validate`` builds the plugins of, to report their problems together with these."""
    if not isinstance(raw, dict):
        return None, [RecipeError("expected a TOML table", file=path)]
    try:
        where, run = recipe_header(raw, path, TOP_LEVEL, "model", 'plugin = "smollm2_embedded"',
                                   RunSpec)
    except RecipeError as exc:
        return None, list(getattr(exc, "errors", [exc]))
    with where.collect():
        check_run_values(run, where)
    tables: list = []
    with where.collect():
        tables = list_of_tables(raw.get("stages"), "stages", where)
    written = _each(where, tables, lambda i, s: _stage(s, i, where))
    names = [s.name for s in written]
    for dup in {n for n in names if names.count(n) > 1}:
        where.problems.append(where.error("stages", f"two stages are named '{dup}'"))
    # `enabled = false` (e.g. `--set stages.clean_expert.enabled=false`) drops a stage here
    stages = [s for s in written if s.enabled]
    disabled = [s.name for s in written if not s.enabled]
    if written and not stages:
        where.problems.append(where.error("stages", "every stage is disabled (enabled = false): "
                                          "nothing to train"))
    try:
        model = _component_spec(raw["model"], "model", where)
    except RecipeError as exc:
        return None, [*where.problems, exc]
    recipe = Recipe(path=path, run=run, model=model, stages=stages)
    with where.collect():
        if "lora" in raw:
            recipe.lora = lora = settings_table(LoraSpec, raw["lora"], "lora", where)
            check_range(where, "lora.r", lora.r, low=1, what="an integer")
            check_range(where, "lora.alpha", lora.alpha, low=0, low_open=True)
            check_range(where, "lora.dropout", lora.dropout, low=0, high=1, high_open=True)
            check_range(where, "lora.init_b_std", lora.init_b_std, low=0)
    experts: dict = {}
    with where.collect():
        experts = as_table(raw.get("experts", {}), "experts", where)
    for name, table in experts.items():
        with where.collect():
            _expert(recipe, name, table, [s.name for s in stages], disabled, where)
    for kind in ("scorer", "reranker", "rot_generator"):
        with where.collect():
            if kind in raw:
                setattr(recipe, kind, _component_spec(raw[kind], kind, where))
    with where.collect():
        if "report" in raw:
            recipe.report = report_spec(raw["report"], where)
    return recipe, where.problems


def _expert(recipe: Recipe, name: str, table: Any, names: list[str], disabled: list[str],
            where: RecipeLocation) -> None:
    """``[experts.<name>]`` into ``recipe``."""
    problem = check_name(name)
    if problem:
        raise where.error(f"experts.{name}", problem)
    table = dict(as_table(table, f"experts.{name}", where))
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


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (``KEY=VALUE`` strings) and parse a recipe file."""
    raw = read_recipe_mapping(path, overrides)
    recipe = parse_recipe(raw, str(path))
    recipe.raw = raw
    return recipe


def load_recipe_collecting(path: str | Path, overrides: list[str] | None = None
                           ) -> tuple[Recipe | None, list[RecipeError]]:
    """`load_recipe` for ``losscraft validate``: the recipe built from what parsed and the
    structural problems (a file that cannot be read or is not TOML still raises)."""
    raw = read_recipe_mapping(path, overrides)
    recipe, problems = parse_recipe_collecting(raw, str(path))
    if recipe is not None:
        recipe.raw = raw
    return recipe, problems


# ---- the classifier dialect: a [classifier] table trains a safety judge (losscraft.judge)

ARCHITECTURES = ("cross_encoder", "embedding_pair")
CLASSIFIER_TOP_LEVEL = ("run", "classifier", "train", "data", "split", "eval_data", "profiles")


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


def _check_classifier_values(r: ClassifierRecipe, where: RecipeLocation) -> None:
    c, t = r.classifier, r.train
    cpus = os.cpu_count() or 1
    _check(0 <= r.run.threads <= cpus, where, "run.threads",
           f"expected an integer from 0 (torch's default) to {cpus} (this machine's CPUs), got "
           f"{r.run.threads}")
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
    where, run = recipe_header(raw, path, CLASSIFIER_TOP_LEVEL, "classifier",
                               'encoder = "minilm_embedded"', ClassifierRunSpec)
    where.raise_problems()
    if "split" in raw and "eval_data" in raw:
        raise where.error("split", "give either [split] (hold out part of [[data]]) or "
                          "[[eval_data]] (explicit held-out sources), not both")
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
    where.raise_problems()  # every bad key of the tables above, before their values are used
    _check_classifier_values(recipe, where)
    return recipe


def load_classifier_recipe(path: str | Path, overrides: list[str] | None = None
                           ) -> ClassifierRecipe:
    """Read, override (``KEY=VALUE`` strings, as ``--set``) and parse a classifier recipe."""
    raw = read_recipe_mapping(path, overrides)
    recipe = parse_classifier_recipe(raw, str(path))
    recipe.raw = raw
    return recipe
