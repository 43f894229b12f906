"""Loading models and tokenizers: hub ids and local folders (`load_causal_lm`), the embedded
SmolLM2-135M-Instruct (`embedded_model_dir`), tiny test models (`tiny_model`, `tiny_tokenizer`),
and helpers for frozen experts (`freeze`, `check_same_vocab`)."""

from losscraft.lazy import lazy_exports
from losscraft.plugins.protocols import LoadedModel, ModelProvider

# Loaded on first use (PEP 562): a plugin importing `losscraft.models.loading` must not pay for
# transformers through `tiny`.
__getattr__, __dir__ = lazy_exports(__name__, {
    "embedded_model_dir": ".embedded", "check_dtype_param": ".loading",
    "check_same_vocab": ".loading", "freeze": ".loading", "load_causal_lm": ".loading",
    "parse_dtype": ".loading", "tiny_model": ".tiny", "tiny_tokenizer": ".tiny"})

__all__ = [
    "LoadedModel", "ModelProvider", "check_dtype_param", "check_same_vocab", "embedded_model_dir",
    "freeze", "load_causal_lm", "parse_dtype", "tiny_model", "tiny_tokenizer",
]
