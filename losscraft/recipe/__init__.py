"""Recipes: TOML files parsed into typed objects (`parse`, `schema`), then built into components
through the plugin registry (`instantiate`) — what `losscraft validate` checks is what trains."""

from losscraft.recipe.instantiate import build_component, build_recipe, validate_recipe
from losscraft.recipe.parse import load_recipe, parse_recipe
from losscraft.recipe.schema import Recipe

__all__ = ["Recipe", "build_component", "build_recipe", "load_recipe", "parse_recipe",
           "validate_recipe"]
