"""Recipes: TOML files parsed into typed, validated objects."""

from losscraft.recipe.parse import load_recipe, parse_recipe
from losscraft.recipe.schema import Recipe
from losscraft.recipe.validate import build_component, validate_recipe

__all__ = ["Recipe", "build_component", "load_recipe", "parse_recipe", "validate_recipe"]
