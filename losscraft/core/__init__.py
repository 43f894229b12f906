"""Core protocols: the `Loss` protocol, the per-step context, step-mean reduction, weighted
composition, penalties."""

from losscraft.core.compose import Term, WeightedObjective
from losscraft.core.context import StepContext
from losscraft.core.loss import Loss, LossOutput
from losscraft.core.reduce import StepMean, per_response_token
from losscraft.core.step import StepMetrics, accumulate_gradients

__all__ = ["Loss", "LossOutput", "StepContext", "StepMean", "StepMetrics", "Term",
           "WeightedObjective", "accumulate_gradients", "per_response_token"]
