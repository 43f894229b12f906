"""Model provider ``tiny``: a randomly initialised miniature Llama with a byte-level tokenizer.

For tests and smoke runs of a recipe's plumbing (it learns nothing useful). Builds in milliseconds,
offline; the same ``seed`` gives the same weights.
"""

from __future__ import annotations

from losscraft.plugins.protocols import LoadedModel
from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.models.loading import parse_dtype


class TinyModel:
    """A tiny `LlamaForCausalLM` (259-token ChatML byte tokenizer, eager attention).

    Args:
        hidden_size: width of the model; must be divisible by ``heads``.
        layers: number of decoder layers.
        heads: attention heads (key/value heads: half of them when even).
        seed: seed of the weight initialisation.
    """

    def __init__(self, hidden_size: int = 32, layers: int = 2, heads: int = 4, seed: int = 0):
        for key, value in (("hidden_size", hidden_size), ("layers", layers), ("heads", heads)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RecipeError(f"expected a positive integer, got {value!r}", key=key)
        if hidden_size % heads:
            raise RecipeError(f"hidden_size {hidden_size} is not divisible by heads {heads}",
                              key="hidden_size")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise RecipeError(f"expected an integer, got {seed!r}", key="seed")
        self.hidden_size, self.layers, self.heads, self.seed = hidden_size, layers, heads, seed

    def load(self, *, device: str = "cpu", dtype=None) -> LoadedModel:
        """Build onto ``device``; ``dtype`` (a torch dtype or name) defaults to float32."""
        from losscraft.models.tiny import tiny_model, tiny_tokenizer

        tokenizer = tiny_tokenizer()
        model = tiny_model(len(tokenizer), hidden_size=self.hidden_size, layers=self.layers,
                           heads=self.heads, seed=self.seed)
        torch_dtype = parse_dtype(dtype)
        if torch_dtype not in (None, "auto"):
            model = model.to(torch_dtype)
        source = (f"tiny(hidden_size={self.hidden_size}, layers={self.layers}, "
                  f"heads={self.heads}, seed={self.seed})")
        return LoadedModel(model.to(device), tokenizer, source)


@hookimpl
def register_models(register):
    register("tiny", TinyModel)
