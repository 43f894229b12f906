"""Module-scoped fixtures shared by the objective tests: the tiny tokenizer and two frozen float64
tiny Llama experts, ``clean`` (seed 2) and ``toxic`` (seed 3). Use them by importing into a test
module: ``from tiny_float64 import experts, tokenizer  # noqa: F401``."""

import pytest

from losscraft.models.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def experts(tokenizer):
    out = {}
    for name, seed in (("clean", 2), ("toxic", 3)):
        model = tiny_model(len(tokenizer), seed=seed).double()
        model.requires_grad_(False)
        out[name] = model
    return out
