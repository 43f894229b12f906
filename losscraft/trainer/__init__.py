"""The trainer: runs a recipe's stages (knows nothing about any particular loss)."""

from losscraft.trainer.loop import RunResult, Trainer

__all__ = ["RunResult", "Trainer"]
