"""Scoring a positive and its negatives in one packed forward equals scoring them one by one."""

import pytest
import torch

from losscraft.data.collate import DialogCollator
from losscraft.functional import segment_logprobs, sequence_logprob
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft.types import Example

EXAMPLES = [
    Example(history=["hi there", "hello", "how are you?"], response="fine thanks, and you?",
            negatives=["go away", "no", "why would I tell you anything"]),
    Example(history=["yo"], response="hey", negatives=["whatever"]),
    Example(history=["can you help me?"], response="of course, what do you need?"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def make_model(tokenizer, attn: str):
    model = tiny_model(len(tokenizer), seed=3)
    model.set_attn_implementation(attn)
    return model.float()


def packed_scores(model, batch, length_normalize):
    logits = model(**batch.model_inputs(), use_cache=False).logits
    return segment_logprobs(logits, batch.targets, batch.segment_ids, batch.num_negatives + 1,
                            length_normalize=length_normalize)


def single_score(model, tokenizer, history, reply, length_normalize):
    batch = DialogCollator(tokenizer)([Example(history=history, response=reply)])
    logits = model(**batch.model_inputs(), use_cache=False).logits
    return sequence_logprob(logits, batch.targets, batch.response_mask,
                            length_normalize=length_normalize)[0]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("length_normalize", [False, True])
def test_packed_scores_equal_one_by_one(tokenizer, attn, length_normalize):
    model = make_model(tokenizer, attn).eval()
    batch = DialogCollator(tokenizer, pack_negatives=True)(EXAMPLES)
    assert batch.attention_mask.dim() == 4 and batch.num_negatives == 3
    with torch.no_grad():
        packed = packed_scores(model, batch, length_normalize)
        for b, ex in enumerate(EXAMPLES):
            for k, reply in enumerate([ex.response, *ex.negatives]):
                one = single_score(model, tokenizer, ex.history, reply, length_normalize)
                torch.testing.assert_close(packed[b, k], one, rtol=1e-5, atol=1e-5)
            assert batch.negative_mask[b].sum().item() == len(ex.negatives)
            assert (packed[b, 1 + len(ex.negatives):] == 0).all()  # empty slots score 0


def test_packed_gradient_equals_one_by_one(tokenizer):
    model = make_model(tokenizer, "eager").train()  # dropout is 0 in the tiny config
    params = [p for p in model.parameters() if p.requires_grad]
    batch = DialogCollator(tokenizer, pack_negatives=True)(EXAMPLES)
    packed = packed_scores(model, batch, False)
    valid = torch.cat([torch.ones(len(EXAMPLES), 1, dtype=torch.bool), batch.negative_mask], 1)
    packed_grads = torch.autograd.grad(packed[valid].sum(), params)
    singles = sum(single_score(model, tokenizer, ex.history, reply, False)
                  for ex in EXAMPLES for reply in [ex.response, *ex.negatives])
    single_grads = torch.autograd.grad(singles, params)
    torch.testing.assert_close(packed[valid].sum(), singles, rtol=1e-5, atol=1e-5)
    for got, want in zip(packed_grads, single_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
