"""Unlikelihood and CRINGE against values computed by hand on a 2-token, 4-word example.

Logits are log-probabilities, so ``softmax`` gives them back exactly:
position 0: p = (0.1, 0.2, 0.3, 0.4), target 3 (the top word);
position 1: p = (0.5, 0.25, 0.125, 0.125), target 2 (not in the top 2).
"""

import math

import pytest
import torch

from losscraft.functional import cringe_loss, unlikelihood_loss

PROBS = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.25, 0.125, 0.125]], dtype=torch.float64)
TARGETS = torch.tensor([3, 2])


def example_logits():
    return PROBS.log().clone().requires_grad_(True)


def test_unlikelihood_value_by_hand():
    # −log(1 − 0.4) and −log(1 − 0.125), averaged.
    expected = (-math.log(0.6) - math.log(0.875)) / 2
    assert unlikelihood_loss(example_logits(), TARGETS).item() == pytest.approx(expected)


def test_unlikelihood_gradient_by_hand():
    z = example_logits()
    unlikelihood_loss(z[:1], TARGETS[:1]).backward()
    # d/dz_j −log(1 − p_y) = p_y (δ_jy − p_j) / (1 − p_y), with p_y = 0.4
    p = PROBS[0]
    expected = 0.4 * (torch.nn.functional.one_hot(torch.tensor(3), 4) - p) / 0.6
    assert torch.allclose(z.grad[0], expected.double(), atol=1e-12)
    assert (z.grad[1] == 0).all()


def test_unlikelihood_clamps_one_minus_p():
    z = torch.tensor([[50.0, 0.0, 0.0, 0.0]])
    assert unlikelihood_loss(z, torch.tensor([0])).item() == pytest.approx(-math.log(1e-5))


def test_unlikelihood_mask_ignore_index_and_normalizer():
    z = example_logits()
    only_first = -math.log(0.6)
    assert unlikelihood_loss(z, TARGETS, torch.tensor([1.0, 0.0])).item() == pytest.approx(
        only_first)
    assert unlikelihood_loss(z, torch.tensor([3, -100])).item() == pytest.approx(only_first)
    total = -math.log(0.6) - math.log(0.875)
    assert unlikelihood_loss(z, TARGETS, normalizer=4).item() == pytest.approx(total / 4)
    assert unlikelihood_loss(z, TARGETS, torch.zeros(2)).item() == 0.0


def test_cringe_k1_value_by_hand():
    # Position 0: top-2 = {3, 2}, the target 3 is dropped, positive = word 2:
    #   −log(0.3 / (0.3 + 0.4)).
    # Position 1: top-2 = {0, 1} lacks the target, the 2nd is dropped, positive = word 0:
    #   −log(0.5 / (0.5 + 0.125)).
    expected = (-math.log(0.3 / 0.7) - math.log(0.5 / 0.625)) / 2
    assert cringe_loss(example_logits(), TARGETS, k=1).item() == pytest.approx(expected)


def test_cringe_k1_gradient_by_hand():
    z = example_logits()
    cringe_loss(z, TARGETS, k=1).backward()
    # d/dz_y softplus(z_y − z_s) = p_y / (p_y + p_s) = −d/dz_s; halved by the mean.
    expected = torch.zeros(2, 4, dtype=torch.float64)
    expected[0, 3], expected[0, 2] = 0.5 * 0.4 / 0.7, -0.5 * 0.4 / 0.7
    expected[1, 2], expected[1, 0] = 0.5 * 0.125 / 0.625, -0.5 * 0.125 / 0.625
    assert torch.allclose(z.grad, expected, atol=1e-12)


def test_cringe_samples_the_positive_from_the_top_k_without_the_target():
    # k = 2 at position 0: candidates {2, 1} (target 3 dropped) with softmax weights 0.3 : 0.2.
    z = example_logits()[:1]
    values = {2: -math.log(0.3 / 0.7), 1: -math.log(0.2 / 0.6)}
    seen = []
    for seed in range(200):
        v = cringe_loss(z, TARGETS[:1], k=2, generator=torch.Generator().manual_seed(seed)).item()
        match = [w for w, val in values.items() if abs(val - v) < 1e-9]
        assert match, f"value {v} is not one of the two possible contrasts"
        seen.append(match[0])
    share = seen.count(2) / len(seen)
    assert 0.48 < share < 0.72  # expected 0.6
    again = [cringe_loss(z, TARGETS[:1], k=2, generator=torch.Generator().manual_seed(s)).item()
             for s in range(5)]
    assert again == [cringe_loss(z, TARGETS[:1], k=2,
                                 generator=torch.Generator().manual_seed(s)).item()
                     for s in range(5)]


def test_cringe_mask_normalizer_and_bad_k():
    z = example_logits()
    first = -math.log(0.3 / 0.7)
    assert cringe_loss(z, TARGETS, torch.tensor([1.0, 0.0])).item() == pytest.approx(first)
    assert cringe_loss(z, torch.tensor([3, -100])).item() == pytest.approx(first)
    assert cringe_loss(z, TARGETS, torch.zeros(2)).item() == 0.0
    total = -math.log(0.3 / 0.7) - math.log(0.5 / 0.625)
    assert cringe_loss(z, TARGETS, normalizer=5).item() == pytest.approx(total / 5)
    with pytest.raises(ValueError, match="k must be"):
        cringe_loss(z, TARGETS, k=4)
