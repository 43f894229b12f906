"""Turning a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a torch device name."""

from __future__ import annotations

import torch

from losscraft.errors import LosscraftError


def resolve_device(name: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; a CUDA device without CUDA is an error
    that says so; anything else as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LosscraftError(f"device '{name}' asked for, but CUDA is not available")
    return name
