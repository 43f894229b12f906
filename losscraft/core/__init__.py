"""Core protocols: the `Loss` protocol, the per-step context, weighted composition, penalties."""

from losscraft.core.compose import Term, WeightedObjective
from losscraft.core.context import StepContext
from losscraft.core.loss import Loss, LossOutput
from losscraft.core.step import StepMetrics, accumulate_gradients

__all__ = ["Loss", "LossOutput", "StepContext", "StepMetrics", "Term", "WeightedObjective",
           "accumulate_gradients"]
