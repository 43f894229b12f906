"""RoT generator ``model``: rules-of-thumb written by a generative model, Canary-style.

ProsocialDialog's Canary reads a dialog context and writes ``<safety label> RoT RoT ...``, e.g.
``__needs_caution__ It's wrong to throw things at people.`` or just ``__casual__`` (no RoT).
Any seq2seq (T5-like) or causal LM fine-tuned to that format works; the text is parsed by
`parse_canary_output`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.data.chat import context_text
from losscraft.models.loading import check_model_path, load_with_hub_check
from losscraft.runtime.device import resolve_device

_LABEL = re.compile(r"^\s*(__[a-z_]+__)\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\s*(?:<sep>|\|)\s*")


def parse_canary_output(text: str) -> tuple[str | None, list[str]]:
    """``"__needs_caution__ It's wrong to lie. You should be honest."`` ->
    ``("__needs_caution__", ["It's wrong to lie.", "You should be honest."])``. RoTs are split at
    sentence ends (and at ``<sep>`` or ``|``); the label is ``None`` when absent."""
    match = _LABEL.match(text)
    label = match.group(1) if match else None
    rest = text[match.end():] if match else text
    rots = [part.strip(" ,;") for part in _SENTENCE_END.split(rest.strip())]
    return label, list(dict.fromkeys(r for r in rots if r))


class ModelRoTs:
    """Generate RoTs with a seq2seq or causal model (greedy or beam search).

    Args:
        path: a local model folder or a hub id.
        prompt: the model input; ``{context}`` is replaced by the context turns.
        turn_separator: joins context turns (Canary was trained on newline-joined turns).
        context_turns: how many of the last turns to show (``None``: all).
        max_input_tokens: the prompt is cut to its last this-many tokens.
        max_new_tokens: generation length limit.
        num_beams: beam width (1 = greedy).
        batch_size: histories per generate call.
        device: ``"cpu"``, ``"cuda"``, ... or ``"auto"``.
    """

    def __init__(self, path: str, prompt: str = "{context}", turn_separator: str = "\n",
                 context_turns: int | None = None, max_input_tokens: int = 512,
                 max_new_tokens: int = 64, num_beams: int = 1, batch_size: int = 8,
                 device: str = "cpu"):
        check_model_path(path, "path")
        if "{context}" not in prompt:
            raise RecipeError("the prompt must contain the placeholder {context}", key="prompt")
        for key, value in (("max_input_tokens", max_input_tokens),
                           ("max_new_tokens", max_new_tokens), ("num_beams", num_beams),
                           ("batch_size", batch_size), ("context_turns", context_turns or 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RecipeError(f"expected a positive integer, got {value!r}", key=key)
        self.path, self.prompt, self.turn_separator = str(path), prompt, turn_separator
        self.context_turns, self.max_input_tokens = context_turns, max_input_tokens
        self.max_new_tokens, self.num_beams, self.batch_size = max_new_tokens, num_beams, batch_size
        self.device = device
        self._model = self._tokenizer = None
        self._seq2seq = False
        self._drop_ids: set[int] = set()

    def _load(self) -> None:
        from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM,
                                  AutoTokenizer)

        def loader(name: str, cached_only: bool):
            config = AutoConfig.from_pretrained(name, local_files_only=cached_only)
            auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
            return (AutoTokenizer.from_pretrained(name, local_files_only=cached_only),
                    auto.from_pretrained(name, config=config, local_files_only=cached_only))

        tokenizer, model = load_with_hub_check(loader, self.path, "path", "a RoT model")
        self._seq2seq = bool(model.config.is_encoder_decoder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right" if self._seq2seq else "left"
        tokenizer.truncation_side = "left"
        # special tokens are dropped except safety labels (a tokenizer may register them as special)
        self._drop_ids = {i for t, i in zip(tokenizer.all_special_tokens,
                                            tokenizer.all_special_ids) if not _LABEL.match(t)}
        self._tokenizer = tokenizer
        self._model = model.to(resolve_device(self.device)).eval()

    def raw_outputs(self, histories: Sequence[Sequence[str]]) -> list[str]:
        """The model's decoded text for each history (loads the model on the first call)."""
        if self._model is None:
            self._load()
        tok, model = self._tokenizer, self._model
        device = next(model.parameters()).device
        out: list[str] = []
        for start in range(0, len(histories), self.batch_size):
            prompts = [self.prompt.replace("{context}", context_text(
                h, last=self.context_turns, separator=self.turn_separator))
                for h in histories[start:start + self.batch_size]]
            enc = tok(prompts, return_tensors="pt", padding=True, truncation=True,
                      max_length=self.max_input_tokens).to(device)
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=self.max_new_tokens,
                                     num_beams=self.num_beams, do_sample=False,
                                     pad_token_id=tok.pad_token_id)
            if not self._seq2seq:
                ids = ids[:, enc["input_ids"].shape[1]:]
            texts = [tok.decode([i for i in row if i not in self._drop_ids])
                     for row in ids.tolist()]
            # a causal model continues past its answer line; Canary's answer is one line
            out.extend(t.strip().split("\n")[0] if not self._seq2seq else t.strip() for t in texts)
        return out

    def generate_with_labels(self, histories: Sequence[Sequence[str]]
                             ) -> list[tuple[str | None, list[str]]]:
        """``(safety label or None, RoTs)`` per history."""
        return [parse_canary_output(text) for text in self.raw_outputs(histories)]

    def generate(self, histories: Sequence[Sequence[str]]) -> list[list[str]]:
        """One list of RoTs per history (empty for casual contexts)."""
        return [rots for _, rots in self.generate_with_labels(histories)]


@hookimpl
def register_rot_generators(register):
    register("rot_model", ModelRoTs, aliases=("model",))
