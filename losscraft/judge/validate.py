"""Checks of a classifier recipe that need the plugin registry but no weights: the encoder
exists (embedded package, local folder, or a hub-id shape), every data source and its parameters
bind and construct, the scheduler name is known."""

from __future__ import annotations

from losscraft.errors import RecipeError
from losscraft.judge.encoder import check_encoder
from losscraft.plugins.registry import Registry, get_registry
from losscraft.recipe.instantiate import build_component
from losscraft.recipe.schema import ClassifierRecipe


def validate_classifier_recipe(recipe: ClassifierRecipe,
                               registry: Registry | None = None) -> list[str]:
    """Validate everything that can be checked without loading weights or reading data. Returns
    notes (what was checked); raises `RecipeError` naming the key on the first problem."""
    from transformers import SchedulerType

    registry = registry or get_registry()
    file = recipe.path
    try:
        notes = [check_encoder(recipe.classifier)]
    except RecipeError as exc:
        raise RecipeError(exc.detail, file=file, key=exc.key) from None
    schedules = [s.value for s in SchedulerType]
    if recipe.train.schedule not in schedules:
        raise RecipeError(f"unknown schedule {recipe.train.schedule!r} (known: "
                          f"{', '.join(schedules)})", file=file, key="train.schedule")
    for spec in [*recipe.data, *recipe.eval_data]:
        build_component("data_source", spec, file, registry)
    notes.append(f"training data: {', '.join(d.plugin for d in recipe.data)}")
    if recipe.eval_data:
        notes.append(f"held-out data: {', '.join(d.plugin for d in recipe.eval_data)}")
    else:
        notes.append(f"held-out split: {recipe.split.fraction:.0%} of each source, by "
                     f"{recipe.split.by}")
    notes.append(f"writes the classifier to {recipe.run.output_dir}/final")
    return notes
