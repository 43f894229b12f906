"""How (context, response) pairs become classifier inputs. The ``hf_classifier`` scorer and the
classifier trainer both encode with `encode_pairs`, so a trained model sees at scoring time exactly
what it saw in training."""

from __future__ import annotations

from collections.abc import Sequence

from losscraft.data.chat import context_text
from losscraft.plugins.protocols import Context


def turn_separator_for(tokenizer, turn_separator: str | None) -> str:
    """``turn_separator``, or by default the tokenizer's sep token in spaces (else a newline)."""
    if turn_separator is not None:
        return turn_separator
    return f" {tokenizer.sep_token} " if getattr(tokenizer, "sep_token", None) else "\n"


def encode_pairs(tokenizer, contexts: Sequence[Context], responses: Sequence[str], *,
                 pair_input: bool = True, turn_separator: str | None = None,
                 max_length: int = 256) -> dict:
    """Tokenize for classification: ``(context turns joined by the separator, response)`` as a
    text pair, or the response alone when ``pair_input`` is false. Over-long inputs lose tokens
    from the left (the oldest context first). Returns padded ``pt`` tensors."""
    tokenizer.truncation_side = "left"
    common = dict(truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    if not pair_input:
        return tokenizer(list(responses), **common)
    sep = turn_separator_for(tokenizer, turn_separator)
    texts = [context_text(c, separator=sep) for c in contexts]
    return tokenizer(texts, list(responses), **common)
