"""Tests of losscraft.generation.nucleus.NucleusFilter against Hugging Face's warper chain."""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from losscraft.generation.nucleus import NucleusFilter


def _hf(scores, temperature, top_p, top_k):
    out = TemperatureLogitsWarper(temperature)(None, scores.clone()) \
        if temperature != 1.0 else scores.clone()
    if top_k:
        out = TopKLogitsWarper(top_k)(None, out)
    if top_p < 1.0:
        out = TopPLogitsWarper(top_p)(None, out)
    return out


@pytest.mark.parametrize("temperature, top_p, top_k, candidates", [
    (0.8, 0.95, 0, 512),   # nucleus inside the candidates
    (0.8, 0.95, 0, 3),     # every row reaches past the candidates: full-sort fallback
    (1.0, 0.5, 0, 64),
    (0.7, 0.9, 20, 512),   # top-k, then top-p among the k
    (1.3, 1.0, 5, 512),    # top-k alone
    (0.6, 1.0, 0, 512),    # temperature alone
])
def test_keeps_the_tokens_and_logits_of_the_hf_chain(temperature, top_p, top_k, candidates):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(8, 1000, generator=gen) * 3
    scores[0] = torch.randn(1000, generator=gen) * 0.01  # nearly flat: nucleus of ~950 tokens
    want = _hf(scores, temperature, top_p, top_k)
    got = NucleusFilter(temperature, top_p, top_k, candidates)(torch.zeros(8, 1).long(), scores)
    assert torch.equal(torch.isinf(got), torch.isinf(want))
    assert torch.allclose(got[~torch.isinf(got)], want[~torch.isinf(want)])
    assert (~torch.isinf(got)).sum(dim=1).min() >= 1


def test_rejects_bad_settings():
    for kwargs in ({"temperature": 0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -1}):
        with pytest.raises(ValueError):
            NucleusFilter(**kwargs)


@pytest.mark.parametrize("temperature, top_p, top_k, candidates", [
    (0.8, 0.9, 0, 512),    # drawn among the candidates
    (1.0, 0.95, 0, 2),     # the nucleus reaches past the candidates: drawn from the full row
    (0.7, 1.0, 4, 512),    # top-k alone
    (1.5, 1.0, 0, 512),    # nothing filtered: the whole tempered row
])
def test_sample_draws_from_the_filtered_distribution(temperature, top_p, top_k, candidates):
    torch.manual_seed(0)
    logits = torch.randn(1, 12) * 2
    no_ids = torch.zeros(1, 1, dtype=torch.long)
    expected = NucleusFilter(temperature, top_p, top_k, candidates)(no_ids, logits).softmax(-1)[0]
    draws = NucleusFilter(temperature, top_p, top_k, candidates).sample(logits.expand(20000, -1))
    seen = torch.bincount(draws, minlength=12) / draws.numel()
    assert torch.all(seen[expected == 0] == 0)            # never a filtered token
    assert torch.allclose(seen, expected, atol=0.015)     # each kept one at its probability


def test_sample_is_reproducible_under_a_seed():
    logits = torch.randn(3, 50)
    torch.manual_seed(4)
    a = NucleusFilter(0.8, 0.95).sample(logits)
    torch.manual_seed(4)
    assert torch.equal(a, NucleusFilter(0.8, 0.95).sample(logits)) and a.shape == (3,)
