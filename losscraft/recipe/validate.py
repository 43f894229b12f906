"""Recipe validation: everything that can be checked without loading weights.

`validate_recipe` runs exactly the construction the trainer uses (`losscraft.recipe.instantiate`):
every plugin name resolves, every parameter binds against its factory's signature and
annotations, every component constructs (constructors check paths), components named inside
others (``[reranker] scorer``) exist, every expert a term reads is declared, penalties are
well-formed. All problems are reported at once. `build_component` is re-exported from
`losscraft.recipe.instantiate` for code that builds one component.
"""

from __future__ import annotations

from typing import Any

from losscraft.plugins.registry import Registry
from losscraft.recipe.schema import Recipe


def build_component(kind: str, spec: Any, file: str, registry: Registry | None = None,
                    **extra: Any) -> Any:
    """See `losscraft.recipe.instantiate.build_component`."""
    from losscraft.recipe.instantiate import build_component as build

    return build(kind, spec, file, registry, **extra)


def validate_recipe(recipe: Recipe, registry: Registry | None = None) -> list[str]:
    """Build every component of ``recipe`` without loading weights (`build_recipe`). Returns
    notes (what was checked); raises `RecipeError` (one problem) or `RecipeErrors` (several,
    all of them) naming the file and keys."""
    from losscraft.recipe.instantiate import build_recipe

    return build_recipe(recipe, registry).notes()
