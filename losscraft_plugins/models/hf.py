"""Model provider ``hf``: any decoder-only causal LM from a local folder or a Hugging Face hub id.

Recipe example::

    [model]
    provider = "hf"
    path = "models/my-smollm2"    # or a hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct"
    dtype = "bfloat16"
"""

from __future__ import annotations


from losscraft.plugins.protocols import LoadedModel
from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.models.loading import check_dtype_param, check_model_path, load_causal_lm


class HFModel:
    """Loads a causal LM and its tokenizer with the `transformers` Auto classes.

    Args:
        path: a local model folder (``save_pretrained`` layout) or a hub id (``org/name``). Hub ids
            need network unless already in the local Hugging Face cache.
        revision: hub branch, tag or commit (ignored for local folders).
        dtype: ``float32`` (default), ``bfloat16``, ``float16`` or ``auto`` (the checkpoint's).
        attn_implementation: e.g. ``eager`` or ``sdpa``; ``None`` lets transformers choose. Use
            ``eager`` with gradient penalties that need double backward on GPU.
    """

    def __init__(self, path: str, revision: str | None = None, dtype: str | None = None,
                 attn_implementation: str | None = None):
        if not isinstance(path, str):
            raise RecipeError(f"expected a local folder or a hub id, got {path!r}", key="path")
        check_model_path(path, "path")
        check_dtype_param(dtype)
        self.path, self.revision, self.dtype = path, revision, dtype
        self.attn_implementation = attn_implementation

    def load(self, *, device: str = "cpu", dtype=None) -> LoadedModel:
        """Load onto ``device``; ``dtype`` (if given) overrides the recipe's ``dtype``."""
        model, tokenizer = load_causal_lm(
            self.path, device=device, dtype=self.dtype if dtype is None else dtype,
            revision=self.revision, attn_implementation=self.attn_implementation, param="path")
        source = f"hf:{self.path}" + (f"@{self.revision}" if self.revision else "")
        return LoadedModel(model, tokenizer, source)


@hookimpl
def register_models(register):
    register("hf", HFModel)
