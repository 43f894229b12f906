"""Stage-level augmentation: give examples rules-of-thumb from the recipe's RoT generator."""

from __future__ import annotations

import dataclasses

from losscraft.plugins.protocols import RotGenerator
from losscraft.errors import RecipeError
from losscraft.recipe.schema import StageSpec
from losscraft.types import Example


def add_rots(examples: list[Example], stage: StageSpec, generator: RotGenerator | None, *,
             file: str | None = None) -> list[Example]:
    """Copies of ``examples`` where those without RoTs (or all, if ``rots.only_missing`` is
    false) carry RoTs from ``generator`` (built by `losscraft.recipe.instantiate`) for their history.
    Where the RoTs go in the prompt is the collator's business (``rots.placement``). ``file``
    names the recipe in errors."""
    spec = stage.rots
    assert spec is not None
    todo = [i for i, ex in enumerate(examples) if not (spec.only_missing and ex.rots)]
    if not todo:
        return examples
    if generator is None:
        raise RecipeError("this stage adds rules-of-thumb but the recipe has no [rot_generator]",
                          file=file, key=f"{stage.key}.rots")
    generated = generator.generate([examples[i].history for i in todo])
    result = list(examples)
    for i, rots in zip(todo, generated):
        result[i] = dataclasses.replace(examples[i], rots=list(rots))
    return result
