"""Core protocols: the `Loss` protocol, the per-step context, weighted composition, penalties."""

from losscraft.core.compose import Term, WeightedObjective
from losscraft.core.context import StepContext
from losscraft.core.loss import Loss, LossOutput

__all__ = ["Loss", "LossOutput", "StepContext", "Term", "WeightedObjective"]
