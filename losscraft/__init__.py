"""losscraft: composable training losses for safe dialog generation."""

from losscraft.core import (Loss, LossOutput, StepContext, StepMean, Term, WeightedObjective,
                            per_response_token)
from losscraft.errors import DataError, LosscraftError, ModelError, PluginError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Batch, Example

__version__ = "0.1.0"

__all__ = [
    "Batch", "DataError", "Example", "Loss", "LossOutput", "LosscraftError", "ModelError",
    "PluginError", "RecipeError", "StepContext", "StepMean", "Term", "WeightedObjective",
    "hookimpl", "per_response_token",
]
