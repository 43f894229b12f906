"""The ``expert_kl`` anchor: KL(expert ‖ policy) on the reply tokens of the chosen rows."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from losscraft.errors import RecipeError
from losscraft.functional import kl_divergence
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft.testing.builders import make_batch, make_context
from losscraft.types import Example
from losscraft_plugins.objectives.expert_kl import ExpertKL


def test_kl_divergence_matches_torch_and_skips_masked_positions():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(2, 5, 11, generator=gen, requires_grad=True)
    q = torch.randn(2, 5, 11, generator=gen)
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.float)
    q[0, 0] = float("nan")  # a masked position holds anything
    got = kl_divergence(p, q, mask)
    keep = mask.bool()
    want = F.kl_div(p[keep].log_softmax(-1), q[keep].log_softmax(-1), log_target=True,
                    reduction="batchmean")
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(kl_divergence(p, q, mask, normalizer=12.0), want * 6 / 12, atol=1e-6)
    got.backward()
    assert p.grad[~keep].abs().sum() == 0 and p.grad[keep].abs().sum() > 0
    assert float(kl_divergence(q.nan_to_num(), q.nan_to_num(), mask)) == pytest.approx(0, abs=1e-6)


def _examples():
    casual = Example(history=["hi, how was your day?"], response="pretty good, I went hiking",
                     safety_label="__casual__", is_safe=True, id="c")
    risky = Example(history=["I want to hurt my brother"], response="please don't, talk to him",
                    safety_label="__needs_caution__", is_safe=True, id="r")
    replayed = dataclasses.replace(casual, id="p", meta={"replayed": True})
    return [casual, risky, replayed]


@pytest.mark.parametrize("rows, chosen", [("all", [0, 1, 2]), ("casual", [0, 2]),
                                          ("replayed", [2])])
def test_expert_kl_compares_only_the_chosen_rows(rows, chosen):
    tok = tiny_tokenizer()
    policy, expert = tiny_model(len(tok), seed=0), tiny_model(len(tok), seed=1)
    batch = make_batch(tok, _examples())
    out = ExpertKL(expert="base", rows=rows)(
        make_context(policy, batch, experts={"base": expert}, tokenizer=tok))
    with torch.no_grad():
        logits_p = policy(**batch.model_inputs(torch.float32)).logits
        logits_q = expert(**batch.model_inputs(torch.float32)).logits
    mask = batch.response_mask.clone()
    mask[[i for i in range(3) if i not in chosen]] = 0
    assert out.metrics["tokens"] == float(mask.sum())
    assert torch.allclose(out.value.detach(), kl_divergence(logits_p, logits_q, mask), atol=1e-5)


def test_expert_kl_without_chosen_rows_is_a_zero_on_the_graph():
    tok = tiny_tokenizer()
    policy, expert = tiny_model(len(tok), seed=0), tiny_model(len(tok), seed=1)
    batch = make_batch(tok, _examples()[1:2])
    out = ExpertKL(rows="casual")(make_context(policy, batch, experts={"base": expert},
                                               tokenizer=tok))
    assert float(out.value.detach()) == 0.0 and out.value.requires_grad


def test_expert_kl_rejects_bad_parameters():
    with pytest.raises(RecipeError, match="rows"):
        ExpertKL(rows="risky")
    with pytest.raises(RecipeError, match="expert"):
        ExpertKL(expert="")
