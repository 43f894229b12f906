"""TOML → typed recipes, in two dialects: a dialog-training `Recipe` (``[model]`` and
``[[stages]]``) and a `ClassifierRecipe` (a ``[classifier]`` table: trains a safety judge).
Structural checks only (keys, types, ranges); plugin checks live in `losscraft.recipe.instantiate`
(and `losscraft.judge.validate` for the classifier's encoder). Every error is a `RecipeError`
naming the file and the key path."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from losscraft.errors import did_you_mean
from losscraft.recipe.names import check_name
from losscraft.recipe.schema import (ROT_PLACEMENTS, ClassifierRecipe, ClassifierRunSpec,
                                     ClassifierSpec, ClassifierTrainSpec, ComponentSpec, DataSpec,
                                     LoraSpec, MiningSpec, PenaltySpec, Recipe, ReplaySpec,
                                     ReportSpec, RotsSpec, RunSpec, SplitSpec, StageSpec, TermSpec)
from losscraft.recipe.tables import (RecipeLocation, as_table, check_range, component_parts,
                                     core_fields, list_of_tables, read_recipe_mapping,
                                     recipe_header, settings_table)

TOP_LEVEL = ("run", "model", "lora", "experts", "stages", "scorer", "reranker", "rot_generator",
             "report", "profiles")
COMPONENT_CORE_KEYS = {DataSpec: ("plugin", "limit"),
                       TermSpec: ("plugin", "name", "weight", "penalty")}


def _component_spec(raw: Any, key: str, where: RecipeLocation) -> ComponentSpec:
    parts = component_parts(raw, key, where)
    return ComponentSpec(parts["core"]["plugin"], parts["params"], key)


def _term(raw: Any, key: str, where: RecipeLocation) -> TermSpec:
    parts = component_parts(raw, key, where, COMPONENT_CORE_KEYS[TermSpec])
    core = dict(parts["core"])
    penalty = core.pop("penalty", None)
    spec = TermSpec(params=parts["params"], key=key, **core_fields(TermSpec, core, key, where))
    if penalty is not None:
        spec.penalty = settings_table(PenaltySpec, penalty, f"{key}.penalty", where)
        if spec.penalty.method not in ("exact", "finite_difference"):
            raise where.error(f"{key}.penalty.method", "expected 'exact' or 'finite_difference', "
                              f"got {spec.penalty.method!r}")
    spec.name = spec.name or spec.plugin
    return spec


def data_spec(raw: Any, key: str, where: RecipeLocation) -> DataSpec:
    parts = component_parts(raw, key, where, COMPONENT_CORE_KEYS[DataSpec])
    return DataSpec(params=parts["params"], key=key,
                    **core_fields(DataSpec, parts["core"], key, where))


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
        table = as_table(raw["replay"], f"{key}.replay", where)
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


def _check_stage_values(s: StageSpec, where: RecipeLocation) -> None:
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
    where, run = recipe_header(raw, path, TOP_LEVEL, "model", 'plugin = "smollm2_embedded"',
                               RunSpec)
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
    for name, table in as_table(raw.get("experts", {}), "experts", where).items():
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
    for kind in ("scorer", "reranker", "rot_generator"):
        if kind in raw:
            setattr(recipe, kind, _component_spec(raw[kind], kind, where))
    if "report" in raw:
        recipe.report = _report(raw["report"], where)
    return recipe


def _report(raw: Any, where: RecipeLocation) -> ReportSpec:
    """``[report]``: settings plus two data-source tables (``contexts``, ``casual_contexts``) and
    an optional scorer table (``second_scorer``)."""
    table = dict(as_table(raw, "report", where))
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


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override (``KEY=VALUE`` strings) and parse a recipe file."""
    raw = read_recipe_mapping(path, overrides)
    recipe = parse_recipe(raw, str(path))
    recipe.raw = raw
    return recipe


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
    _check_classifier_values(recipe, where)
    return recipe


def load_classifier_recipe(path: str | Path, overrides: list[str] | None = None
                           ) -> ClassifierRecipe:
    """Read, override (``KEY=VALUE`` strings, as ``--set``) and parse a classifier recipe."""
    raw = read_recipe_mapping(path, overrides)
    recipe = parse_classifier_recipe(raw, str(path))
    recipe.raw = raw
    return recipe
