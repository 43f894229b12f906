"""losscraft: composable training losses for safe dialog generation."""

from losscraft.errors import DataError, LosscraftError, ModelError, PluginError, RecipeError
from losscraft.lazy import lazy_exports
from losscraft.plugins.hookspecs import hookimpl

__version__ = "0.1.0"

# Loaded on first use (PEP 562), so that ``from losscraft import hookimpl`` in a plugin, and the
# command line's ``--help``, do not import torch.
__getattr__, __dir__ = lazy_exports(__name__, {
    "Loss": "losscraft.core", "LossOutput": "losscraft.core", "StepContext": "losscraft.core",
    "StepMean": "losscraft.core", "Term": "losscraft.core",
    "WeightedObjective": "losscraft.core", "per_response_token": "losscraft.core",
    "Batch": "losscraft.types", "Example": "losscraft.types",
})

__all__ = [
    "Batch", "DataError", "Example", "Loss", "LossOutput", "LosscraftError", "ModelError",
    "PluginError", "RecipeError", "StepContext", "StepMean", "Term", "WeightedObjective",
    "hookimpl", "per_response_token",
]
