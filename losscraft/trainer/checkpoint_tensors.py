"""What a checkpoint's tensors must be before a run resumes from them.

A manifest proves the files are the ones written, not that what was written makes sense: a
buggy tool (or a careless hand) that edits a checkpoint and re-hashes its manifest passes it.
`check_saved_tensors` (part of verifying a checkpoint, so a failure falls back to the previous
one) reads every tensor once: each must be finite — weights *and* optimizer state, a NaN there
would reach the weights at the first step. `check_weights_fit` and `check_optimizer_fits` (when
loading into the model) compare each tensor's dtype and shape with the parameter it belongs to:
``load_state_dict`` would otherwise cast a float64 moment silently, or fail with a traceback on
a wrong shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from losscraft.errors import CheckpointError

#: Optimizer state entries holding one value per parameter element (AdamW's moments).
_PER_ELEMENT = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def check_saved_tensors(directory: Path) -> None:
    """`CheckpointError` unless every floating tensor of ``directory``'s safetensors files is
    finite (read one tensor at a time)."""
    for file in ("trainable.safetensors", "training_state.safetensors"):
        path = Path(directory) / file
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    tensor = f.get_tensor(key)
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                        what = "weight" if file.startswith("trainable") else "optimizer state"
                        raise CheckpointError(f"{path}: {what} tensor '{key}' has NaN/inf "
                                              "values")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: cannot read ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _describe(tensor: torch.Tensor) -> str:
    return f"{str(tensor.dtype).removeprefix('torch.')} {tuple(tensor.shape)}"


def check_weights_fit(weights: dict[str, torch.Tensor], model: torch.nn.Module,
                      directory: Path) -> None:
    """Each saved trainable weight has its parameter's dtype and shape (of the whole
    parameter: a sharded model's are compared unsharded)."""
    params = dict(model.named_parameters())
    for name, tensor in weights.items():
        param = params[name]
        shape = tuple(param.shape)  # a DTensor's shape is the whole parameter's
        if tensor.dtype != param.dtype or tuple(tensor.shape) != shape:
            raise CheckpointError(
                f"{directory}/trainable.safetensors: '{name}' is {_describe(tensor)}, the "
                f"model's parameter is {str(param.dtype).removeprefix('torch.')} {shape}; the "
                "checkpoint was edited or belongs to another model (move it away to resume from "
                "the previous one)")


def check_optimizer_fits(state: dict[str, Any], params: list[torch.Tensor],
                         directory: Path) -> None:
    """The optimizer state (keyed by parameter number) fits ``params`` (the trainable ones, in
    order): as many parameters, each moment tensor of its parameter's dtype and shape, each step
    count a finite number."""
    try:
        groups = state["param_groups"]
        listed = [p for g in groups for p in g["params"]]
        per_param = state["state"]
    except (KeyError, TypeError):
        raise CheckpointError(f"{directory}/training_state.json: the optimizer state has no "
                              "param_groups/state") from None
    where = f"{directory}/training_state.safetensors"
    if sorted(listed) != list(range(len(params))):
        raise CheckpointError(f"{where}: the optimizer state lists {len(listed)} parameters, "
                              f"the model has {len(params)} trainable ones")
    if not isinstance(per_param, dict):
        raise CheckpointError(f"{where}: the optimizer state is not a table")
    for index, entry in per_param.items():
        if not isinstance(index, int) or not 0 <= index < len(params) or \
                not isinstance(entry, dict):
            raise CheckpointError(f"{where}: optimizer state for parameter {index!r} does not "
                                  "belong to the model")
        param = params[index]
        for key, value in entry.items():
            if key in _PER_ELEMENT:
                if not torch.is_tensor(value) or value.dtype != param.dtype or \
                        tuple(value.shape) != tuple(param.shape):
                    got = _describe(value) if torch.is_tensor(value) else type(value).__name__
                    raise CheckpointError(
                        f"{where}: optimizer '{key}' of parameter {index} is {got}, the "
                        f"parameter {_describe(param)} (move this checkpoint away to resume "
                        "from the previous one)")
            elif key == "step":
                step = value if torch.is_tensor(value) else torch.tensor(value)
                if step.numel() != 1 or not bool(torch.isfinite(step.double()).all()) or \
                        float(step) < 0:
                    raise CheckpointError(f"{where}: optimizer step of parameter {index} is "
                                          f"not a count ({value!r})")
