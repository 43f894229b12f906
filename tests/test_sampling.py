"""Tests of losscraft.sampling.NucleusFilter against Hugging Face's warper chain."""

from __future__ import annotations

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from losscraft.sampling import NucleusFilter


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
