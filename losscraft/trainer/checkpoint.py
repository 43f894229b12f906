"""Checkpoints: trainable weights (safetensors), optimizer, scheduler, RNG states and the data
position, written atomically (temp folder + rename) so an interrupted save never leaves a
half-written checkpoint behind."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from losscraft.errors import LosscraftError


@dataclass
class TrainState:
    """Where training is: stage, steps done, micro-batches consumed, and the stage's plan."""

    stage_index: int = 0
    stage_name: str = ""
    stage_step: int = 0            # optimizer steps done in this stage
    global_step: int = 0           # optimizer steps done in the run
    data_position: int = 0         # micro-batches consumed in this stage
    stage_done: bool = False


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


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(directory: Path, *, model, optimizer, scheduler, state: TrainState,
                    generator: torch.Generator | None = None) -> Path:
    """Write ``directory`` atomically and point ``<parent>/latest`` at it."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_state(generator)}, tmp / "training_state.pt")
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    latest = directory.parent / "latest"
    latest_tmp = directory.parent / "latest.tmp"
    latest_tmp.write_text(directory.name)
    os.replace(latest_tmp, latest)
    return directory


def latest_checkpoint(checkpoints: Path) -> Path | None:
    pointer = Path(checkpoints) / "latest"
    if not pointer.is_file():
        return None
    path = Path(checkpoints) / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


def read_state(directory: Path) -> TrainState:
    return TrainState(**json.loads((Path(directory) / "state.json").read_text()))


def load_checkpoint(directory: Path, *, model, optimizer, scheduler,
                    generator: torch.Generator | None = None) -> TrainState:
    """Restore weights, optimizer, scheduler and RNG from ``directory``; return its state."""
    directory = Path(directory)
    weights = load_file(str(directory / "trainable.safetensors"))
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != expected:
        raise LosscraftError(f"checkpoint {directory} does not match the model's trainable "
                             f"parameters ({len(weights)} saved vs {len(expected)} expected): "
                             "was the recipe's model or [lora] changed?")
    device = next(model.parameters()).device
    model.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=False)
    blob = torch.load(directory / "training_state.pt", weights_only=False)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    set_rng_state(blob["rng"], generator)
    return read_state(directory)


def save_marker(directory: Path, state: TrainState) -> Path:
    """A weight-less checkpoint recording that a stage finished (its model is saved beside)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    latest_tmp = directory.parent / "latest.tmp"
    latest_tmp.write_text(directory.name)
    os.replace(latest_tmp, directory.parent / "latest")
    return directory
