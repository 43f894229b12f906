"""The build/validate seam: one place that turns a `Recipe` into built components.

`build_recipe` constructs every component a recipe names — the model provider and experts (not
loaded: providers load weights only in ``load()``), the scorer, reranker and RoT generator, every
stage's data sources, its objective (terms *and* gradient-norm penalties) and its mining scorer,
the report's context sources — and runs the cross-checks between them (every expert a term reads
is declared and comes from an earlier stage, a stage that adds RoTs has a generator, a stage
that mines has a scorer). ``losscraft validate`` is exactly this construction; the trainer
receives its result instead of reaching into the recipe layer and the registry.

Errors are collected, not raised one at a time: `build_recipe` raises every problem at once
(`RecipeErrors`; a single problem is raised as itself). Each is a `RecipeError` naming the recipe
file and the key (``stages.main.terms.safety.penalty.radius``).

Components named *inside* other components are built here too: a factory parameter annotated
with a component protocol (``scorer: str | Scorer``, ``rot_generator: str | RotGenerator | None``)
takes a registered name in the recipe; `build_component` builds that component (with the
parameters in ``<param>_params``, if the factory has such a parameter) and passes the object, so
a misspelt ``[reranker] scorer`` is a validate-time error keyed ``reranker.scorer``.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from losscraft.plugins.protocols import DataSource, ModelProvider, Reranker, RotGenerator, Scorer
from losscraft.core.compose import Term, WeightedObjective
from losscraft.core.loss import Loss, loss_experts
from losscraft.errors import LosscraftError, PluginError, RecipeError
from losscraft.plugins.params import ParameterError, parameter_hints
from losscraft.plugins.registry import Component, Registry, bind_params, get_registry
from losscraft.recipe.schema import (DEFAULT_SCORER, ComponentSpec, Recipe, StageSpec,
                                     default_report_contexts)
from losscraft.recipe.tables import ErrorCollector

__all__ = ["BuiltRecipe", "BuiltStage", "ErrorCollector", "build_component", "build_objective",
           "build_recipe", "nested_component_params"]

#: component protocol -> kind, for parameters that name another component
PROTOCOL_KINDS: dict[type, str] = {Scorer: "scorer", RotGenerator: "rot_generator",
                                   Reranker: "reranker", ModelProvider: "model",
                                   DataSource: "data_source", Loss: "objective"}


# ------------------------------------------------------------------------- one component
def nested_component_params(factory: Callable[..., Any]) -> dict[str, str]:
    """Parameters of ``factory`` that name another component: parameter -> kind (from an
    annotation that includes a component protocol, e.g. ``scorer: str | Scorer``)."""
    nested = {}
    for name, tp in parameter_hints(factory).items():
        arms = typing.get_args(tp) if typing.get_args(tp) else (tp,)
        for arm in arms:
            if arm in PROTOCOL_KINDS:
                nested[name] = PROTOCOL_KINDS[arm]
                break
    return nested


def build_component(kind: str, spec: ComponentSpec | Any, file: str,
                    registry: Registry | None = None, **extra: Any) -> Any:
    """Instantiate the plugin ``spec.plugin`` of ``kind`` with ``spec.params`` (plus ``extra``):
    the name resolves (aliases included), parameters bind against the factory's signature and
    annotations, components named by its parameters are built first, then the factory runs.
    Every failure becomes a `RecipeError` naming the recipe file and the key."""
    registry = registry or get_registry()
    params = {**spec.params, **extra}
    try:
        comp = registry.get(kind, spec.plugin)
    except PluginError as exc:
        raise RecipeError(str(exc), file=file, key=f"{spec.key}.plugin") from exc.__cause__
    return _construct(comp, params, spec.key, file, registry)


def _construct(comp: Component, params: dict[str, Any], key: str, file: str,
               registry: Registry) -> Any:
    try:
        bind_params(comp, params)
    except ParameterError as exc:
        raise RecipeError(str(exc), file=file,
                          key=f"{key}.{exc.path}" if exc.path else key) from None
    except PluginError as exc:
        raise RecipeError(str(exc), file=file, key=key) from None
    params = _build_nested(comp, params, key, file, registry)
    try:
        return comp.factory(**params)
    except RecipeError as exc:  # plugin knows the parameter: prefix it with the component key
        raise RecipeError(exc.detail, file=file,
                          key=f"{key}.{exc.key}" if exc.key else key) from None
    except (LosscraftError, ValueError, TypeError, FileNotFoundError) as exc:
        raise RecipeError(f"{comp.name}: {exc}", file=file, key=key) from None


def _build_nested(comp: Component, params: dict[str, Any], key: str, file: str,
                  registry: Registry) -> dict[str, Any]:
    """``params`` with every component name given to a component-typed parameter replaced by
    the built component (string defaults too, so they are checked as well)."""
    nested = nested_component_params(comp.factory)
    if not nested:
        return params
    signature = inspect.signature(comp.factory).parameters
    params = dict(params)
    for name, kind in nested.items():
        value = params.get(name, signature[name].default if name in signature else None)
        if not isinstance(value, str):
            continue  # None, an object from code, or no default
        sub_params_name = f"{name}_params"
        sub_params = params.get(sub_params_name) or {}
        if not isinstance(sub_params, dict):
            raise RecipeError(f"expected a table, got {sub_params!r}", file=file,
                              key=f"{key}.{sub_params_name}")
        try:
            sub = registry.get(kind, value)
        except PluginError as exc:
            raise RecipeError(str(exc), file=file, key=f"{key}.{name}") from exc.__cause__
        sub_key = f"{key}.{sub_params_name}" if sub_params_name in signature else f"{key}.{name}"
        params[name] = _construct(sub, dict(sub_params), sub_key, file, registry)
        if sub_params_name in signature:
            params[sub_params_name] = None
    return params


# ------------------------------------------------------------------------- objectives
def build_objective(stage: StageSpec, file: str, registry: Registry | None = None,
                    collector: ErrorCollector | None = None) -> WeightedObjective | None:
    """The stage's weighted objective: each term, and after a term with a ``penalty`` (weight
    > 0) its `GradientNormPenalty` named ``<term>_grad_penalty``. With a ``collector``, failures
    are recorded there and ``None`` is returned when any term failed."""
    registry = registry or get_registry()
    collector = collector or ErrorCollector(raise_now=True)
    terms, ok = _build_terms(stage, file, registry, collector)
    return _compose(stage, file, terms, collector) if ok else None


def _build_terms(stage: StageSpec, file: str, registry: Registry,
                 collector: ErrorCollector) -> tuple[list[Term], bool]:
    """Every term of ``stage`` that builds (with its penalty), and whether all of them did."""
    from losscraft.core.penalty import GradientNormPenalty

    terms: list[Term] = []
    ok = True
    for spec in stage.terms:
        with collector.catch() as result:
            loss = build_component("objective", spec, file, registry)
            terms.append(Term(spec.name, loss, spec.weight))
            if spec.penalty is not None and spec.penalty.weight:
                try:
                    penalty = GradientNormPenalty(loss, method=spec.penalty.method,
                                                  radius=spec.penalty.radius,
                                                  exact_mode=spec.penalty.exact_mode,
                                                  difference=spec.penalty.difference,
                                                  eps=spec.penalty.eps or None,
                                                  share_every=spec.penalty.share_every,
                                                  key=f"{spec.key}.penalty")
                except RecipeError as exc:
                    key = f"{spec.key}.penalty" + (f".{exc.key}" if exc.key else "")
                    raise RecipeError(exc.detail, file=file, key=key) from None
                terms.append(Term(f"{spec.name}_grad_penalty", penalty, spec.penalty.weight))
        ok = ok and result.ok
    return terms, ok


def _compose(stage: StageSpec, file: str, terms: list[Term],
             collector: ErrorCollector) -> WeightedObjective | None:
    with collector.catch():
        try:
            return WeightedObjective(terms)
        except ValueError as exc:
            raise RecipeError(str(exc), file=file, key=f"{stage.key}.terms") from None
    return None


# ------------------------------------------------------------------------- whole recipe
@dataclass
class BuiltStage:
    """A stage's built components. ``objective`` is ``None`` only when building failed."""

    spec: StageSpec
    objective: WeightedObjective | None
    data_sources: list[tuple[ComponentSpec, Any]] = field(default_factory=list)
    replay_sources: list[tuple[ComponentSpec, Any]] = field(default_factory=list)
    mining_scorer: Any = None

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class BuiltReport:
    """What the before/after summary measures with: its scorer (the recipe's ``[scorer]`` or
    `DEFAULT_SCORER`), the optional second scorer, the held-back context sources (``risky``
    always, ``casual`` when set) and the reranker of its example replies."""

    scorer_spec: ComponentSpec
    scorer: Any = None
    second_scorer: Any = None
    contexts: dict[str, tuple[ComponentSpec, Any]] = field(default_factory=dict)
    reranker: Any = None


@dataclass
class BuiltRecipe:
    """Every component of a recipe, constructed (no weights loaded)."""

    recipe: Recipe
    model: Any = None
    experts: dict[str, Any] = field(default_factory=dict)   # experts not made by a stage
    scorer: Any = None
    reranker: Any = None
    rot_generator: Any = None
    report: BuiltReport | None = None   # None when [report] is disabled
    stages: list[BuiltStage] = field(default_factory=list)

    def stage(self, name: str) -> BuiltStage:
        return next(s for s in self.stages if s.name == name)

    def notes(self) -> list[str]:
        """One line per checked part, as ``losscraft validate`` prints them."""
        recipe = self.recipe
        notes = [f"model: {recipe.model.plugin}"]
        for name, spec in recipe.experts.items():
            source = recipe.expert_from_stage.get(name)
            notes.append(f"expert {name}: output of stage '{source}'" if source
                         else f"expert {name}: {spec.plugin}")
        for kind in ("scorer", "reranker", "rot_generator"):
            spec = getattr(recipe, kind)
            if spec is not None:
                notes.append(f"{kind}: {spec.plugin}")
        for stage in self.stages:
            terms = [t.name for t in stage.objective.terms] if stage.objective else []
            replayed = (f" (+{len(stage.replay_sources)} replayed)"
                        if stage.replay_sources else "")
            notes.append(f"stage {stage.name}: {len(stage.data_sources)} data source(s)"
                         f"{replayed}, terms {', '.join(terms)}")
        if self.report is not None:
            blocks = ", ".join(f"{name} from {spec.plugin}"
                               for name, (spec, _) in self.report.contexts.items())
            notes.append(f"summary: scorer {self.report.scorer_spec.plugin}, {blocks}")
        return notes


def build_recipe(recipe: Recipe, registry: Registry | None = None, *,
                 problems: list[RecipeError] | tuple = ()) -> BuiltRecipe:
    """Construct every component of ``recipe`` and check how they fit together; raise all
    problems at once (see the module docstring), after ``problems`` (the structural ones
    `losscraft.recipe.parse.parse_recipe_collecting` found)."""
    registry = registry or get_registry()
    file = recipe.path
    errors = ErrorCollector()
    errors.errors.extend(problems)
    built = BuiltRecipe(recipe)
    with errors.catch():
        built.model = build_component("model", recipe.model, file, registry)
    for name, spec in recipe.experts.items():
        if name not in recipe.expert_from_stage:
            with errors.catch():
                built.experts[name] = build_component("model", spec, file, registry)
    for kind in ("scorer", "reranker", "rot_generator"):
        spec = getattr(recipe, kind)
        if spec is not None:
            with errors.catch():
                setattr(built, kind, build_component(kind, spec, file, registry))
    if recipe.report.enabled:
        built.report = _build_report(recipe, built, registry, errors)
    stage_names = [s.name for s in recipe.stages]
    for index, stage in enumerate(recipe.stages):
        built.stages.append(_build_stage(recipe, index, stage, stage_names, built, registry,
                                         errors))
    errors.raise_if_any()
    return built


def _build_report(recipe: Recipe, built: BuiltRecipe, registry: Registry,
                  errors: ErrorCollector) -> BuiltReport:
    """The summary's components; the recipe's own scorer and reranker are shared, not rebuilt."""
    file, spec = recipe.path, recipe.report
    report = BuiltReport(recipe.scorer or ComponentSpec(DEFAULT_SCORER, {}, "scorer"),
                         reranker=built.reranker if spec.rerank else None)
    if recipe.scorer is not None:
        report.scorer = built.scorer
    else:
        with errors.catch():
            report.scorer = build_component("scorer", report.scorer_spec, file, registry)
    if spec.second_scorer is not None:
        with errors.catch():
            report.second_scorer = build_component("scorer", spec.second_scorer, file, registry)
    blocks = {"risky": spec.contexts or default_report_contexts(),
              "casual": spec.casual_contexts}
    for name, source in blocks.items():
        if source is not None:
            with errors.catch():
                report.contexts[name] = (source, build_component("data_source", source, file,
                                                                 registry))
    return report


def _build_stage(recipe: Recipe, index: int, stage: StageSpec, stage_names: list[str],
                 built: BuiltRecipe, registry: Registry, errors: ErrorCollector) -> BuiltStage:
    file = recipe.path
    result = BuiltStage(stage, None)
    for data in stage.data:
        with errors.catch():
            result.data_sources.append((data, build_component("data_source", data, file,
                                                              registry)))
    if stage.replay is not None and stage.replay.enabled:
        for data in stage.replay.data:
            with errors.catch():
                result.replay_sources.append((data, build_component("data_source", data, file,
                                                                    registry)))
    terms, terms_ok = _build_terms(stage, file, registry, errors)
    result.objective = _compose(stage, file, terms, errors) if terms_ok else None
    for term in stage.terms:  # experts: declared, and made by an earlier stage
        loss = next((t.loss for t in terms if t.name == term.name), None)
        for expert in loss_experts(loss):
            with errors.catch():
                if expert not in recipe.experts:
                    raise RecipeError(f"term '{term.name}' reads expert '{expert}', which is not "
                                      f"declared (add [experts.{expert}])", file=file,
                                      key=term.key)
                source = recipe.expert_from_stage.get(expert)
                if source is not None and stage_names.index(source) >= index:
                    raise RecipeError(f"expert '{expert}' comes from stage '{source}', which "
                                      f"does not run before stage '{stage.name}'", file=file,
                                      key=term.key)
    if stage.rots and stage.rots.enabled and recipe.rot_generator is None:
        with errors.catch():
            raise RecipeError("this stage adds rules-of-thumb but the recipe has no "
                              "[rot_generator]", file=file, key=f"{stage.key}.rots")
    if stage.mining and stage.mining.enabled:
        with errors.catch():
            if stage.mining.scorer:
                spec = ComponentSpec(stage.mining.scorer, {}, f"{stage.key}.mining.scorer")
                try:
                    comp = registry.get("scorer", spec.plugin)
                except PluginError as exc:
                    raise RecipeError(str(exc), file=file, key=spec.key) from exc.__cause__
                result.mining_scorer = _construct(comp, {}, spec.key, file, registry)
            elif recipe.scorer is not None:
                result.mining_scorer = built.scorer
            else:
                raise RecipeError("negative mining needs a scorer: set mining.scorer or add "
                                  "[scorer]", file=file, key=f"{stage.key}.mining")
    return result


def validate_recipe(recipe: Recipe, registry: Registry | None = None, *,
                    problems: list[RecipeError] | tuple = ()) -> list[str]:
    """Build every component of ``recipe`` without loading weights (`build_recipe`): every
    plugin name resolves, every parameter binds against its factory's signature and annotations,
    every component constructs (constructors check paths), components named inside others exist,
    every expert a term reads is declared, penalties are well-formed. Returns notes (what was
    checked); raises `RecipeError` (one problem) or `RecipeErrors` (several, all of them) naming
    the file and keys — together with ``problems``, the recipe's structural problems."""
    return build_recipe(recipe, registry, problems=problems).notes()
