"""Where training is (`TrainState`, read back from ``state.json`` by `parse_state`) and the RNG
states a checkpoint carries, so a resumed run draws exactly what an uninterrupted one would."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from losscraft.errors import CheckpointError


@dataclass
class TrainState:
    """Where training is: stage, steps done, micro-batches consumed, and the stage's plan."""

    stage_index: int = 0
    stage_name: str = ""
    stage_step: int = 0            # optimizer steps done in this stage
    global_step: int = 0           # optimizer steps done in the run
    data_position: int = 0         # micro-batches consumed in this stage
    stage_done: bool = False
    skipped_steps: int = 0         # non-finite steps skipped so far in this stage
    world_size: int = 1            # processes of the data-parallel run that wrote it


def parse_state(raw: Any, where: str) -> TrainState:
    """A `TrainState` from ``state.json``'s mapping, checking every field's type and range."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: expected a JSON object")
    types = {f.name: f.type for f in fields(TrainState)}
    unknown = set(raw) - set(types)
    if unknown:
        raise CheckpointError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for name in ("stage_index", "stage_name", "stage_step", "global_step", "data_position"):
        if name not in raw:
            raise CheckpointError(f"{where}: missing key '{name}'")
    for name, value in raw.items():
        want = {"int": int, "str": str, "bool": bool}[types[name]]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise CheckpointError(f"{where}: key '{name}' should be {types[name]}, got {value!r}")
        if want is int and value < 0:
            raise CheckpointError(f"{where}: key '{name}' is negative ({value})")
    state = TrainState(**raw)
    if state.world_size < 1:
        raise CheckpointError(f"{where}: key 'world_size' must be at least 1")
    if state.stage_step > state.global_step:
        raise CheckpointError(f"{where}: stage_step {state.stage_step} > global_step "
                              f"{state.global_step}")
    if state.skipped_steps > state.stage_step:
        raise CheckpointError(f"{where}: skipped_steps {state.skipped_steps} > stage_step "
                              f"{state.stage_step}")
    if state.data_position < state.stage_step:
        raise CheckpointError(f"{where}: data_position {state.data_position} < stage_step "
                              f"{state.stage_step} (every step reads a micro-batch)")
    if state.stage_done and state.stage_step == 0:
        raise CheckpointError(f"{where}: stage_done = true after 0 steps")
    return state


# ----------------------------------------------------------------------------- RNG
def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])
