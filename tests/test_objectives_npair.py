"""The socially_aware_npair and embedding_npair objectives on a tiny model with packed batches."""

import pytest
import torch

from losscraft import RecipeError, StepContext
from losscraft.data.collate import DialogCollator
from losscraft.functional import npair_loss, segment_logprobs
from losscraft.models.tiny import tiny_model, tiny_tokenizer
from losscraft.plugins.registry import Registry
from losscraft.types import Example
from losscraft_plugins.objectives.embedding_npair import EmbeddingNPairLoss, pooling_ids
from losscraft_plugins.objectives.socially_aware_npair import SociallyAwareNPairLoss

EXAMPLES = [
    Example(history=["I want to hurt my brother"], response="Please don't, talk to him instead.",
            negatives=["Go for it.", "Sounds fun"], negative_weights=[2.0, 1.0]),
    Example(history=["hi", "hello", "how are you?"], response="Good, thanks!",
            negatives=["Shut up."]),
    Example(history=["what's up"], response="Not much, you?"),  # no negatives
]


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model(tokenizer):
    return tiny_model(len(tokenizer), seed=1)


def packed(tokenizer, examples=EXAMPLES):
    return DialogCollator(tokenizer, pack_negatives=True)(examples)


def scores(model, batch):
    with torch.no_grad():
        logits = model(**batch.model_inputs(), use_cache=False).logits
    return segment_logprobs(logits, batch.targets, batch.segment_ids, batch.num_negatives + 1,
                            length_normalize=True)


def test_registered_under_its_name():
    registry = Registry()
    registry.load_entry_points({"socially_aware_npair", "embedding_npair"})
    loss = registry.create("objective", "socially_aware_npair", {"margin": 1.0})
    assert isinstance(loss, SociallyAwareNPairLoss) and loss.requires == {"negatives"}
    emb = registry.create("objective", "embedding_npair", {})
    assert emb.requires == {"hidden_states", "negatives"}


def test_rejects_bad_temperature():
    with pytest.raises(RecipeError, match="temperature"):
        SociallyAwareNPairLoss(temperature=0.0)
    with pytest.raises(RecipeError, match="temperature"):
        EmbeddingNPairLoss(temperature=-1.0)


def test_value_matches_functional_and_gradients_are_finite(model, tokenizer):
    batch = packed(tokenizer)
    loss = SociallyAwareNPairLoss(margin=0.5, temperature=0.5, use_negative_weights=True)
    out = loss(StepContext(model, batch))
    s = scores(model, batch)
    want = npair_loss(s[:, 0], s[:, 1:], batch.negative_mask, margin=0.5, temperature=0.5,
                      neg_weights=batch.negative_weights)  # mean over the 2 rows with negatives
    torch.testing.assert_close(out.value.detach(), want, rtol=1e-5, atol=1e-6)
    out.value.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert set(out.metrics) == {"pos_score", "neg_score", "accuracy"}
    valid = batch.negative_mask
    acc = (s[:, 1:] < s[:, :1])[valid].float().mean()
    torch.testing.assert_close(out.metrics["accuracy"], acc)


def test_negative_weights_are_used_only_when_asked(model, tokenizer):
    batch = packed(tokenizer)
    plain = SociallyAwareNPairLoss()(StepContext(model, batch)).value
    weighted = SociallyAwareNPairLoss(use_negative_weights=True)(StepContext(model, batch)).value
    assert weighted.item() > plain.item()  # the first negative counts twice


def test_gradient_accumulation_matches_one_big_batch(model, tokenizer):
    loss = SociallyAwareNPairLoss(margin=0.2, length_normalize=False)
    params = [p for p in model.parameters() if p.requires_grad]
    full = packed(tokenizer)
    big = torch.autograd.grad(loss(StepContext(model, full)).value, params)
    micro = [packed(tokenizer, EXAMPLES[:1]), packed(tokenizer, EXAMPLES[1:])]
    total = sum(loss(StepContext(model, b, step_batches=micro)).value for b in micro)
    acc = torch.autograd.grad(total, params)
    for g_big, g_acc in zip(big, acc):
        torch.testing.assert_close(g_acc, g_big, rtol=1e-4, atol=1e-6)


def test_training_raises_positive_above_negatives(model, tokenizer):
    batch = packed(tokenizer)
    loss = SociallyAwareNPairLoss(margin=1.0)
    before = scores(model, batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        opt.zero_grad()
        loss(StepContext(model, batch)).value.backward()
        opt.step()
    after = scores(model, batch)
    valid = batch.negative_mask
    gap = lambda s: (s[:, :1] - s[:, 1:])[valid]  # noqa: E731
    assert (gap(after) > gap(before)).all()
    assert (gap(after) - gap(before)).mean() > 0.5


def test_pooling_ids_follow_the_packed_layout(tokenizer):
    batch = packed(tokenizer)
    ids = pooling_ids(batch.segment_ids)
    for b in range(len(EXAMPLES)):
        seg = batch.segment_ids[b]
        for k in range(1, 1 + batch.negative_mask[b].sum().item() + 1):
            targets_at = (seg == k).nonzero().flatten()
            inputs_at = (ids[b] == k + 1).nonzero().flatten()
            # a segment's input tokens are its targets' positions shifted by one
            assert torch.equal(inputs_at, targets_at + 1)
        first = (seg > 0).nonzero()[0].item()
        assert (ids[b, : first + 1] == 1).all() and (ids[b, first + 1:] != 1).all()


def test_embedding_npair_trains_and_separates(model, tokenizer):
    batch = packed(tokenizer)
    loss = EmbeddingNPairLoss(temperature=0.1)

    def run():
        return loss(StepContext(model, batch, need_hidden_states=True))

    first = run()
    assert torch.isfinite(first.value) and first.value.requires_grad
    assert {"pos_cosine", "neg_cosine", "accuracy"} <= set(first.metrics)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        opt.zero_grad()
        out = run()
        out.value.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
    last = run()
    assert last.value.item() < first.value.item()
    gap = lambda m: m["pos_cosine"] - m["neg_cosine"]  # noqa: E731
    assert gap(last.metrics) > gap(first.metrics)
