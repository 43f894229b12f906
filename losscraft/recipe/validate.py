"""Checks that need the plugin registry but no weights: every plugin name exists, every parameter
binds against its factory's signature, every component constructs (constructors check paths), and
every expert a term reads is declared. `build_component` is also what the trainer uses."""

from __future__ import annotations

from typing import Any

from losscraft.core.loss import loss_experts
from losscraft.errors import LosscraftError, PluginError, RecipeError
from losscraft.plugins import Registry, bind_params, get_registry
from losscraft.recipe.schema import ComponentSpec, Recipe


def build_component(kind: str, spec: ComponentSpec | Any, file: str,
                    registry: Registry | None = None, **extra: Any) -> Any:
    """Instantiate the plugin ``spec.plugin`` of ``kind`` with ``spec.params`` (plus ``extra``);
    every failure becomes a `RecipeError` naming the recipe file and the component's key."""
    registry = registry or get_registry()
    params = {**spec.params, **extra}
    try:
        comp = registry.get(kind, spec.plugin)
    except PluginError as exc:
        raise RecipeError(str(exc), file=file, key=f"{spec.key}.plugin") from None
    try:
        bind_params(comp, params)
    except PluginError as exc:
        raise RecipeError(str(exc), file=file, key=spec.key) from None
    try:
        return comp.factory(**params)
    except RecipeError as exc:  # plugin knows the parameter: prefix it with the component key
        key = f"{spec.key}.{exc.key}" if exc.key else spec.key
        raise RecipeError(exc.detail, file=file, key=key) from None
    except (LosscraftError, ValueError, TypeError, FileNotFoundError) as exc:
        raise RecipeError(f"{spec.plugin}: {exc}", file=file, key=spec.key) from None


def validate_recipe(recipe: Recipe, registry: Registry | None = None) -> list[str]:
    """Validate everything that can be checked without loading weights. Returns a list of notes
    (what was checked); raises `RecipeError` on the first problem."""
    registry = registry or get_registry()
    file = recipe.path
    notes = [f"model: {recipe.model.plugin}"]
    build_component("model", recipe.model, file, registry)
    stage_names = [s.name for s in recipe.stages]
    for name, spec in recipe.experts.items():
        if name in recipe.expert_from_stage:
            notes.append(f"expert {name}: output of stage '{recipe.expert_from_stage[name]}'")
            continue
        build_component("model", spec, file, registry)
        notes.append(f"expert {name}: {spec.plugin}")
    for kind in ("scorer", "reranker", "rot_generator"):
        spec = getattr(recipe, kind)
        if spec is not None:
            build_component(kind, spec, file, registry)
            notes.append(f"{kind}: {spec.plugin}")
    for key in ("contexts", "casual_contexts"):
        spec = getattr(recipe.report, key)
        if spec is not None:
            build_component("data_source", spec, file, registry)
    for index, stage in enumerate(recipe.stages):
        for data in stage.data:
            build_component("data_source", data, file, registry)
        for term in stage.terms:
            loss = build_component("objective", term, file, registry)
            for expert in loss_experts(loss):
                if expert not in recipe.experts:
                    raise RecipeError(f"term '{term.name}' reads expert '{expert}', which is not "
                                      f"declared (add [experts.{expert}])", file=file, key=term.key)
                source = recipe.expert_from_stage.get(expert)
                if source is not None and stage_names.index(source) >= index:
                    raise RecipeError(f"expert '{expert}' comes from stage '{source}', which does "
                                      f"not run before stage '{stage.name}'", file=file,
                                      key=term.key)
        if stage.rots and stage.rots.enabled and recipe.rot_generator is None:
            raise RecipeError("this stage adds rules-of-thumb but the recipe has no "
                              "[rot_generator]", file=file, key=f"{stage.key}.rots")
        if stage.mining and stage.mining.enabled and not (stage.mining.scorer or recipe.scorer):
            raise RecipeError("negative mining needs a scorer: set mining.scorer or add [scorer]",
                              file=file, key=f"{stage.key}.mining")
        notes.append(f"stage {stage.name}: {len(stage.data)} data source(s), "
                     f"terms {', '.join(t.name for t in stage.terms)}")
    return notes
