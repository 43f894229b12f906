"""Recipes: TOML files parsed into typed objects (`parse`, `schema`), then built into components
through the plugin registry (`instantiate`) — what `losscraft validate` checks is what trains."""

from losscraft.lazy import lazy_exports

# Loaded on first use (PEP 562): the command line reads `losscraft.recipe.schema`'s defaults
# without importing torch through `instantiate`.
__getattr__, __dir__ = lazy_exports(__name__, {
    "build_component": ".instantiate", "build_recipe": ".instantiate",
    "validate_recipe": ".instantiate", "load_recipe": ".parse", "parse_recipe": ".parse",
    "Recipe": ".schema"})

__all__ = ["Recipe", "build_component", "build_recipe", "load_recipe", "parse_recipe",
           "validate_recipe"]
