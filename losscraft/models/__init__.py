"""Loading models and tokenizers: hub ids and local folders (`load_causal_lm`), the embedded
SmolLM2-135M-Instruct (`embedded_model_dir`), tiny test models (`tiny_model`, `tiny_tokenizer`),
and helpers for frozen experts (`freeze`, `check_same_vocab`)."""

from losscraft.plugins.protocols import LoadedModel, ModelProvider
from losscraft.models.embedded import embedded_model_dir
from losscraft.models.loading import (
    check_dtype_param, check_same_vocab, freeze, load_causal_lm, parse_dtype,
)
from losscraft.models.tiny import tiny_model, tiny_tokenizer

__all__ = [
    "LoadedModel", "ModelProvider", "check_dtype_param", "check_same_vocab", "embedded_model_dir",
    "freeze", "load_causal_lm", "parse_dtype", "tiny_model", "tiny_tokenizer",
]
