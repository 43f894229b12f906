"""Replaying random draws: the same dropout masks for every forward of one micro-batch.

A gradient-norm penalty evaluates a micro-batch's loss more than once (at the current parameters
and at perturbed ones, or in a first pass over the step and again in the second). With dropout
active, each forward would draw fresh masks and the passes would compare different functions — a
finite difference divides that mismatch by a small radius. `StepContext` records the global RNG
state before a micro-batch's first forward (`snapshot`) and runs every later forward of the same
micro-batch from that state (`replay`), leaving the global RNG where it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def snapshot(device: torch.device) -> dict[str, Any]:
    """The CPU generator's state and, on CUDA, the state of ``device``'s generator."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


@contextmanager
def replay(state: dict[str, Any], device: torch.device) -> Iterator[None]:
    """Run the block from ``state`` (a `snapshot`); restore the current RNG state after it."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
        yield
