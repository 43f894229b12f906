"""Scorer ``hf_classifier``: any Hugging Face sequence-classification model as a safety scorer.

Loads with `AutoModelForSequenceClassification` from a local folder (e.g. one saved with
``save_pretrained``) or a hub id (cached copies only when offline). Inputs are encoded by
`encode_pairs`; code that trains a classifier for this scorer should encode with it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from losscraft.plugins.protocols import Context
from losscraft.errors import ModelError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.judge.inputs import encode_pairs
from losscraft.models.loading import check_model_path, load_with_hub_check
from losscraft.runtime.device import resolve_device
from losscraft_plugins.scoring.common import check_same_length


class HFClassifierScorer:
    """P(unsafe) = softmax(logits)[unsafe_index] of a sequence classifier (sigmoid when the model
    has a single output).

    Args:
        path: a local model folder or a hub id.
        unsafe_index: the label index meaning "unsafe" (checked against ``num_labels`` at load).
        pair_input: encode (context, response) as a text pair; false scores the response alone.
        turn_separator: joins context turns; default the tokenizer's sep token (else a newline).
        batch_size: texts per forward pass.
        max_length: token limit of an encoded input.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ... or ``"auto"``.
    """

    name = "hf_classifier"

    def __init__(self, path: str, unsafe_index: int = 1, pair_input: bool = True,
                 turn_separator: str | None = None, batch_size: int = 32, max_length: int = 256,
                 device: str = "cpu"):
        check_model_path(path, "path")
        for key, value, low in (("unsafe_index", unsafe_index, 0), ("batch_size", batch_size, 1),
                                ("max_length", max_length, 8)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise RecipeError(f"expected an integer >= {low}, got {value!r}", key=key)
        self.path, self.unsafe_index, self.pair_input = str(path), unsafe_index, bool(pair_input)
        self.turn_separator, self.batch_size = turn_separator, batch_size
        self.max_length = max_length
        self.device = device
        self._model = self._tokenizer = None
        self._last = None

    def _load(self) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        def loader(name: str, cached_only: bool):
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=cached_only)
            model = AutoModelForSequenceClassification.from_pretrained(
                name, local_files_only=cached_only)
            return tokenizer, model

        tokenizer, model = load_with_hub_check(loader, self.path, "path",
                                               "a sequence classifier")
        n = model.config.num_labels
        if self.unsafe_index >= max(n, 1) or (n == 1 and self.unsafe_index != 0):
            raise ModelError(f"parameter 'unsafe_index': {self.unsafe_index} is out of range for "
                             f"{self.path!r}, which has {n} label(s) "
                             f"({getattr(model.config, 'id2label', {})})")
        self._tokenizer = tokenizer
        self._model = model.to(resolve_device(self.device)).eval()

    def label_probs(self, contexts: Sequence[Context], responses: Sequence[str]) -> torch.Tensor:
        """``(N, num_labels)`` label probabilities (softmax; one sigmoid column for a one-output
        model). The model loads on the first call; the last call's result is reused, so asking
        for P(unsafe) and then another label of the same pairs costs one pass."""
        check_same_length(contexts, responses, f"scorer '{self.name}'")
        key = (tuple(map(str, contexts)), tuple(responses))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        if self._model is None:
            self._load()
        device = next(self._model.parameters()).device
        out = []
        for start in range(0, len(responses), self.batch_size):
            enc = encode_pairs(self._tokenizer, contexts[start:start + self.batch_size],
                               responses[start:start + self.batch_size],
                               pair_input=self.pair_input, turn_separator=self.turn_separator,
                               max_length=self.max_length)
            with torch.no_grad():
                logits = self._model(**enc.to(device)).logits.float()
            out.append((logits.sigmoid() if logits.shape[-1] == 1 else logits.softmax(-1)).cpu())
        probs = torch.cat(out) if out else torch.zeros(0, max(self._model.config.num_labels, 1))
        self._last = (key, probs)
        return probs

    def p_unsafe(self, contexts: Sequence[Context], responses: Sequence[str]) -> list[float]:
        """Probabilities in [0, 1], one per response (the model loads on the first call)."""
        return self.label_probs(contexts, responses)[:, self.unsafe_index].tolist()


@hookimpl
def register_scorers(register):
    register("hf_classifier", HFClassifierScorer)
