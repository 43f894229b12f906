"""Checkpoint state as plain data: nested Python values split into a JSON document and a flat
dict of tensors (saved with safetensors), so that reading a checkpoint never runs code.

`to_plain` walks dicts, lists, tuples, numpy arrays, tensors and JSON scalars; everything else is
refused when *saving* (nothing is silently dropped). Tuples, dicts with non-string keys and numpy
arrays are tagged so that `from_plain` rebuilds exactly the same structure (an optimizer's
``betas`` stay a tuple, its ``state`` keeps integer keys, numpy's RNG state stays an array).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from losscraft.errors import CheckpointError

_SCALARS = (type(None), bool, int, float, str)


def to_plain(value: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """``value`` as JSON-able data; its tensors are moved into ``tensors`` under fresh keys."""
    if isinstance(value, _SCALARS):
        return value
    if torch.is_tensor(value):
        key = f"{prefix}.{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [to_plain(v, tensors, prefix) for v in value]}
    if isinstance(value, list):
        return [to_plain(v, tensors, prefix) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: to_plain(v, tensors, prefix) for k, v in value.items()}
        return {"__items__": [[to_plain(k, tensors, prefix), to_plain(v, tensors, prefix)]
                              for k, v in value.items()]}
    raise CheckpointError(f"cannot store a {type(value).__name__} in a checkpoint "
                          "(only tensors, arrays and JSON values)")


def from_plain(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `to_plain`; a reference to a missing tensor raises `CheckpointError`."""
    if isinstance(value, list):
        return [from_plain(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        key = value["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"tensor '{key}' is missing")
        return tensors[key]
    if "__ndarray__" in value:
        return np.asarray(value["__ndarray__"], dtype=np.dtype(str(value["dtype"])))
    if "__tuple__" in value:
        return tuple(from_plain(v, tensors) for v in value["__tuple__"])
    if "__items__" in value:
        return {from_plain(k, tensors): from_plain(v, tensors) for k, v in value["__items__"]}
    return {k: from_plain(v, tensors) for k, v in value.items()}
