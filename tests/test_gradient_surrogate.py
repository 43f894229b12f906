"""`gradient_surrogate`: a zero scalar that hands given gradients to given tensors."""

import pytest
import torch

from losscraft.core.gradient_surrogate import gradient_surrogate


def test_value_is_zero_and_gradient_is_scaled_by_weight_and_scale():
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    ga, gb = torch.randn(3, 4), torch.randn(5)
    expected_a, expected_b = ga * 2.5 * 0.1, gb * 2.5 * 0.1
    s = gradient_surrogate([a, b], [ga, gb], scale=2.5)
    assert s.item() == 0.0 and s.dtype == torch.float32
    (0.1 * s + (a.sum() * 0)).backward()
    torch.testing.assert_close(a.grad, expected_a)
    torch.testing.assert_close(b.grad, expected_b)


def test_accumulates_with_other_contributions_and_skips_none():
    a = torch.randn(4, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    g = torch.randn(4)
    expected = 2 * a.detach() + g
    ((a * a).sum() + gradient_surrogate([a, b], [g.clone(), None])).backward()
    torch.testing.assert_close(a.grad, expected)
    assert b.grad is None


def test_casts_to_each_tensors_dtype_after_scaling():
    w = torch.randn(8, dtype=torch.bfloat16, requires_grad=True)
    g = torch.full((8,), 1e-3, dtype=torch.float32)
    gradient_surrogate([w], [g], scale=1e3).backward()
    assert w.grad.dtype == torch.bfloat16
    torch.testing.assert_close(w.grad.float(), torch.ones(8))


def test_bad_shapes_and_counts_are_refused():
    a = torch.randn(3, requires_grad=True)
    with pytest.raises(ValueError, match="1 tensors but 2 gradients"):
        gradient_surrogate([a], [torch.ones(3), torch.ones(3)])
    with pytest.raises(ValueError, match=r"shape \(4,\) for a tensor of shape \(3,\)"):
        gradient_surrogate([a], [torch.ones(4)])


def test_back_propagated_once():
    a = torch.randn(3, requires_grad=True)
    s = gradient_surrogate([a], [torch.ones(3)])
    s.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        s.backward()
