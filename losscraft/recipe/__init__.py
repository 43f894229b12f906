"""Recipes: TOML files parsed into typed objects (`parse`, `schema`), then built into components
through the plugin registry (`instantiate`) — what `losscraft validate` checks is what trains."""

# Loaded on first use (PEP 562): the command line reads `losscraft.recipe.schema`'s defaults
# without importing torch through `instantiate`.
_LAZY = {"build_component": "instantiate", "build_recipe": "instantiate",
         "validate_recipe": "instantiate", "load_recipe": "parse", "parse_recipe": "parse",
         "Recipe": "schema"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"losscraft.recipe.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'losscraft.recipe' has no attribute '{name}'")

__all__ = ["Recipe", "build_component", "build_recipe", "load_recipe", "parse_recipe",
           "validate_recipe"]
