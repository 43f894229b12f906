"""Stage-level augmentation: give examples rules-of-thumb from the recipe's RoT generator."""

from __future__ import annotations

import dataclasses

from losscraft.errors import RecipeError
from losscraft.plugins import Registry
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.recipe.validate import build_component
from losscraft.types import Example


def add_rots(examples: list[Example], recipe: Recipe, stage: StageSpec,
             registry: Registry) -> list[Example]:
    """Copies of ``examples`` where those without RoTs (or all, if ``rots.only_missing`` is
    false) carry RoTs generated for their history. Where the RoTs go in the prompt is the
    collator's business (``rots.placement``)."""
    spec = stage.rots
    assert spec is not None
    todo = [i for i, ex in enumerate(examples) if not (spec.only_missing and ex.rots)]
    if not todo:
        return examples
    if recipe.rot_generator is None:
        raise RecipeError("this stage adds rules-of-thumb but the recipe has no [rot_generator]",
                          file=recipe.path, key=f"{stage.key}.rots")
    generator = build_component("rot_generator", recipe.rot_generator, recipe.path, registry)
    generated = generator.generate([examples[i].history for i in todo])
    result = list(examples)
    for i, rots in zip(todo, generated):
        result[i] = dataclasses.replace(examples[i], rots=list(rots))
    return result
