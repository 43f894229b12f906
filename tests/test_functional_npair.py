"""Sequence scores and n-pair losses against hand computations."""

import math

import pytest
import torch

from losscraft.functional import (embedding_npair_loss, npair_loss, segment_logprobs,
                                  segment_mean, sequence_logprob, token_logprobs)


def npair_by_hand(pos, negs, margin=0.0, tau=1.0, weights=None):
    weights = weights or [1.0] * len(negs)
    return math.log(1 + sum(w * math.exp((n - pos + margin) / tau) for n, w in zip(negs, weights)))


# ------------------------------------------------------------------ sequence scores
def test_token_logprobs_match_log_softmax_and_skip_ignored_targets():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    targets[1, 3] = -100
    got = token_logprobs(logits, targets)
    want = torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0)[..., None])[..., 0]
    want[1, 3] = 0.0
    torch.testing.assert_close(got, want)


def test_sequence_logprob_by_hand():
    # one row, vocab 2: logits [0, ln 3] -> p = (1/4, 3/4)
    logits = torch.tensor([[[0.0, math.log(3.0)]] * 3])
    targets = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    total = math.log(0.75) + math.log(0.25)
    assert sequence_logprob(logits, targets, mask).item() == pytest.approx(total, rel=1e-6)
    mean = sequence_logprob(logits, targets, mask, length_normalize=True).item()
    assert mean == pytest.approx(total / 2, rel=1e-6)


def test_segment_logprobs_match_per_segment_masks():
    torch.manual_seed(1)
    logits = torch.randn(2, 9, 11, requires_grad=True)
    targets = torch.randint(0, 11, (2, 9))
    segment_ids = torch.tensor([[0, 0, 1, 1, 0, 2, 2, 2, 0],
                                [0, 1, 1, 1, 1, 0, 0, 0, 0]])  # row 1: negative slot empty
    for norm in (False, True):
        got = segment_logprobs(logits, targets, segment_ids, 2, length_normalize=norm)
        want = torch.stack([sequence_logprob(logits, targets, (segment_ids == k + 1).float(),
                                             length_normalize=norm) for k in range(2)], -1)
        torch.testing.assert_close(got, want)
        assert got[1, 1].item() == 0.0
    g1, = torch.autograd.grad(segment_logprobs(logits, targets, segment_ids, 2).sum(), logits)
    whole = sequence_logprob(logits, targets, (segment_ids > 0).float()).sum()
    g2, = torch.autograd.grad(whole, logits)
    torch.testing.assert_close(g1, g2)


def test_segment_mean_by_hand():
    values = torch.arange(12.0).view(1, 4, 3)
    means, counts = segment_mean(values, torch.tensor([[1, 1, 0, 2]]), 3)
    torch.testing.assert_close(means[0, 0], torch.tensor([1.5, 2.5, 3.5]))
    torch.testing.assert_close(means[0, 1], values[0, 3])
    torch.testing.assert_close(means[0, 2], torch.zeros(3))
    assert counts.tolist() == [[2.0, 1.0, 0.0]]


# ------------------------------------------------------------------ n-pair
def test_npair_one_negative_by_hand():
    loss = npair_loss(torch.tensor([1.0]), torch.tensor([[0.5]]), margin=0.2, temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.6)), rel=1e-6)


def test_npair_three_negatives_by_hand_and_mean_over_rows():
    pos = torch.tensor([-2.0, -1.0])
    neg = torch.tensor([[-3.0, -1.5, -2.5], [-0.5, -4.0, -1.0]])
    per_row = npair_loss(pos, neg, margin=0.3, temperature=2.0, reduction="none")
    want = [npair_by_hand(-2.0, [-3.0, -1.5, -2.5], 0.3, 2.0),
            npair_by_hand(-1.0, [-0.5, -4.0, -1.0], 0.3, 2.0)]
    assert per_row.tolist() == pytest.approx(want, rel=1e-6)
    mean = npair_loss(pos, neg, margin=0.3, temperature=2.0)
    assert mean.item() == pytest.approx(sum(want) / 2, rel=1e-6)
    total = npair_loss(pos, neg, margin=0.3, temperature=2.0, reduction="sum")
    assert total.item() == pytest.approx(sum(want), rel=1e-6)


@pytest.mark.parametrize("pos,neg,margin", [(-10.0, -12.0, 5.0), (-10.0, -30.0, 5.0),
                                            (-3.0, -1.0, 0.0)])
def test_npair_tends_to_hinge_as_temperature_vanishes(pos, neg, margin):
    hinge = max(0.0, margin - pos + neg)
    for tau in (1e-1, 1e-2, 1e-3):
        scaled = tau * npair_loss(torch.tensor([pos]), torch.tensor([[neg]]), margin=margin,
                                  temperature=tau).item()
        assert abs(scaled - hinge) <= tau * math.log(2) + 1e-6  # |τ·softplus(x/τ) − max(0,x)|
    assert scaled == pytest.approx(hinge, abs=1e-3)


def test_padded_negatives_have_no_effect_on_value_or_gradient():
    pos = torch.tensor([-1.0, -2.0], requires_grad=True)
    neg = torch.tensor([[-1.5, 1e4, float("nan")], [-2.2, -1.9, 3.0]], requires_grad=True)
    mask = torch.tensor([[True, False, False], [True, True, False]])
    loss = npair_loss(pos, neg, mask, margin=0.1)
    want = (npair_by_hand(-1.0, [-1.5], 0.1) + npair_by_hand(-2.0, [-2.2, -1.9], 0.1)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)
    loss.backward()
    assert torch.isfinite(pos.grad).all()
    assert neg.grad[~mask].abs().sum().item() == 0.0


def test_rows_without_negatives_contribute_nothing():
    pos = torch.tensor([-1.0, -5.0])
    neg = torch.tensor([[-2.0], [0.0]])
    mask = torch.tensor([[True], [False]])
    assert npair_loss(pos, neg, mask).item() == pytest.approx(npair_by_hand(-1.0, [-2.0]))
    none = npair_loss(pos, neg, mask, reduction="none")
    assert none[1].item() == 0.0
    empty = npair_loss(pos, torch.zeros(2, 0))
    assert empty.item() == 0.0


def test_negative_weights():
    pos = torch.tensor([-1.0])
    neg = torch.tensor([[-1.2, -0.8, -3.0]])
    w = torch.tensor([[2.0, 0.5, 0.0]])
    got = npair_loss(pos, neg, margin=0.5, temperature=0.7, neg_weights=w).item()
    assert got == pytest.approx(npair_by_hand(-1.0, [-1.2, -0.8, -3.0], 0.5, 0.7,
                                              [2.0, 0.5, 0.0]), rel=1e-6)
    dropped = npair_loss(pos, neg[:, :2], margin=0.5, temperature=0.7, neg_weights=w[:, :2])
    assert got == pytest.approx(dropped.item(), rel=1e-6)  # weight 0 = no negative
    ones = npair_loss(pos, neg, neg_weights=torch.ones_like(neg))
    assert ones.item() == pytest.approx(npair_loss(pos, neg).item(), rel=1e-6)


def test_npair_rejects_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        npair_loss(torch.zeros(1), torch.zeros(1, 1), temperature=0.0)
    with pytest.raises(ValueError, match="non-negative"):
        npair_loss(torch.zeros(1), torch.zeros(1, 1), neg_weights=torch.tensor([[-1.0]]))
    with pytest.raises(ValueError, match="expected"):
        npair_loss(torch.zeros(2), torch.zeros(3, 1))


# ------------------------------------------------------------------ embedding n-pair
def test_embedding_npair_by_hand():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    negatives = torch.tensor([[[-1.0, 0.0], [5.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    tau = 0.5
    r = 1 / math.sqrt(2)
    # row 0: cos with positives [r, 0], negatives [-1, 1]; row 1: positives [r, 1], negatives [0]
    row0 = -math.log(math.exp(r / tau) / sum(math.exp(c / tau) for c in (r, 0.0, -1.0, 1.0)))
    row1 = -math.log(math.exp(1 / tau) / sum(math.exp(c / tau) for c in (r, 1.0, 0.0)))
    got = embedding_npair_loss(anchor, positive, negatives, mask, temperature=tau,
                               reduction="none")
    assert got.tolist() == pytest.approx([row0, row1], rel=1e-5)
    alone = embedding_npair_loss(anchor, positive, negatives, mask, temperature=tau,
                                 in_batch=False, reduction="none")
    row0_alone = -math.log(math.exp(r / tau) / sum(math.exp(c / tau) for c in (r, -1.0, 1.0)))
    row1_alone = -math.log(math.exp(1 / tau) / sum(math.exp(c / tau) for c in (1.0, 0.0)))
    assert alone.tolist() == pytest.approx([row0_alone, row1_alone], rel=1e-5)
    mean = embedding_npair_loss(anchor, positive, negatives, mask, temperature=tau)
    assert mean.item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
