"""Chunked Jensen–Shannon divergence: limits, symmetry, agreement with a two-KL formula,
chunking invariance, masking and double backward."""

import math

import pytest
import torch
import torch.nn.functional as F

from losscraft.functional import js_divergence, js_divergence_rows, safety_loss


def reference_js(p, q):
    """Per-position JS from two ``F.kl_div`` calls on an explicit mixture (float64)."""
    log_p, log_q = p.double().log_softmax(-1), q.double().log_softmax(-1)
    log_m = (0.5 * (log_p.exp() + log_q.exp())).log()
    kl_pm = F.kl_div(log_m, log_p, log_target=True, reduction="none").sum(-1)
    kl_qm = F.kl_div(log_m, log_q, log_target=True, reduction="none").sum(-1)
    return 0.5 * (kl_pm + kl_qm)


def logits(*shape, seed=0, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g)).to(dtype)


def test_zero_for_identical_inputs():
    p = logits(3, 5, 11)
    assert js_divergence(p, p.clone()).abs().item() < 1e-12
    assert js_divergence(p, p + 7.0, chunk_size=2).abs().item() < 1e-12  # softmax-invariant


def test_symmetric():
    p, q = logits(4, 13, seed=1), logits(4, 13, seed=2)
    assert torch.allclose(js_divergence(p, q), js_divergence(q, p), atol=1e-12)


def test_bounded_by_ln2_and_by_one_in_base_2():
    p, q = logits(6, 9, seed=3, scale=5.0), logits(6, 9, seed=4, scale=5.0)
    assert 0 < js_divergence(p, q).item() <= math.log(2)
    assert 0 < js_divergence(p, q, log_base=2).item() <= 1.0
    # Disjoint one-hot-like distributions reach the bound.
    far_p = torch.full((2, 4), -1e4, dtype=torch.float64)
    far_q = far_p.clone()
    far_p[:, 0] = 0.0
    far_q[:, 1] = 0.0
    assert js_divergence(far_p, far_q).item() == pytest.approx(math.log(2), abs=1e-9)
    assert js_divergence(far_p, far_q, log_base=2).item() == pytest.approx(1.0, abs=1e-9)


def test_equals_two_kl_formula_on_random_logits():
    p, q = logits(3, 7, 17, seed=5), logits(3, 7, 17, seed=6)
    expected = reference_js(p, q).mean()
    assert js_divergence(p, q, chunk_size=4).item() == pytest.approx(expected.item(), abs=1e-12)
    rows = js_divergence_rows(p.reshape(-1, 17), q.reshape(-1, 17), chunk_size=5)
    assert torch.allclose(rows[:, 0], reference_js(p, q).reshape(-1), atol=1e-12)


def test_float32_result_close_to_float64_reference():
    p, q = logits(5, 50, seed=7, dtype=torch.bfloat16), logits(5, 50, seed=8, dtype=torch.float32)
    out = js_divergence(p, q)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(reference_js(p, q).mean().item(), rel=1e-5)


def test_minus_infinity_logits_give_finite_values_and_gradients():
    p, q = logits(3, 6, seed=9), logits(3, 6, seed=10)
    p[:, 0] = float("-inf")
    q[:, 0] = float("-inf")
    p.requires_grad_(True)
    value = js_divergence(p, q)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(p.grad).all()


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 64])
def test_chunked_equals_unchunked_in_value_and_gradient(chunk_size):
    p, q = logits(2, 9, 12, seed=11), logits(2, 9, 12, seed=12)
    mask = (torch.arange(18).reshape(2, 9) % 3 != 0).double()
    grads = []
    values = []
    for cs in (None, chunk_size):
        pp, qq = p.clone().requires_grad_(True), q.clone().requires_grad_(True)
        value = js_divergence(pp, qq, mask, chunk_size=cs)
        value.backward()
        values.append(value.detach())
        grads.append((pp.grad, qq.grad))
    assert torch.allclose(values[0], values[1], atol=1e-14)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-14)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-14)


def test_gradient_matches_reference_autograd():
    p, q = logits(10, 8, seed=13).requires_grad_(True), logits(10, 8, seed=14)
    (g_chunked,) = torch.autograd.grad(js_divergence(p, q, chunk_size=3), p)
    (g_ref,) = torch.autograd.grad(reference_js(p, q).mean(), p)
    assert torch.allclose(g_chunked, g_ref, atol=1e-12)


def test_masked_positions_have_no_effect():
    p, q = logits(2, 6, 10, seed=15), logits(2, 6, 10, seed=16)
    mask = torch.tensor([[0, 1, 1, 0, 1, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.float64)
    base = js_divergence(p, q, mask)
    garbage_p, garbage_q = p.clone(), q.clone()
    garbage_p[mask == 0] = float("nan")
    garbage_q[mask == 0] = 1e6
    garbage_p.requires_grad_(True)
    value = js_divergence(garbage_p, garbage_q, mask, chunk_size=2)
    assert value.item() == pytest.approx(base.item(), abs=1e-12)
    value.backward()
    assert (garbage_p.grad[mask == 0] == 0).all()
    # Same as the plain mean over the kept positions.
    kept = reference_js(p, q)[mask.bool()].mean()
    assert base.item() == pytest.approx(kept.item(), abs=1e-12)


def test_normalizer_replaces_the_mask_count():
    p, q = logits(4, 5, seed=17), logits(4, 5, seed=18)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    total = reference_js(p, q)[mask.bool()].sum()
    assert js_divergence(p, q, mask, normalizer=10).item() == pytest.approx(total.item() / 10)
    assert js_divergence(p, q, torch.zeros(4)).item() == 0.0


def test_double_backward_through_chunked_version():
    p, q = logits(7, 9, seed=19).requires_grad_(True), logits(7, 9, seed=20)
    v = logits(7, 9, seed=21)

    def hvp(fn):
        (g,) = torch.autograd.grad(fn(p), p, create_graph=True)
        (hv,) = torch.autograd.grad((g * v).sum(), p)
        return hv

    chunked = hvp(lambda x: js_divergence(x, q, chunk_size=2))
    reference = hvp(lambda x: reference_js(x, q).mean())
    assert chunked.abs().max() > 1e-3
    assert torch.allclose(chunked, reference, atol=1e-12)
    assert torch.autograd.gradgradcheck(
        lambda a, b: js_divergence_rows(a, b, chunk_size=3),
        (p.detach()[:4, :5].requires_grad_(True), q[:4, :5].clone().requires_grad_(True)))


def test_nested_torch_func_transforms_match_reference():
    p, q = logits(6, 7, seed=22), logits(6, 7, seed=23)

    def grad_hvp(fn):
        g = torch.func.grad(fn)(p)
        _, vjp_fn = torch.func.vjp(torch.func.grad(fn), p)
        return g, vjp_fn(g)[0]

    g1, h1 = grad_hvp(lambda x: js_divergence(x, q, chunk_size=4))
    g2, h2 = grad_hvp(lambda x: reference_js(x, q).mean())
    assert torch.allclose(g1, g2, atol=1e-12) and torch.allclose(h1, h2, atol=1e-12)


def test_safety_loss_combines_the_two_divergences():
    p, c, t = logits(3, 4, 9, seed=24), logits(3, 4, 9, seed=25), logits(3, 4, 9, seed=26)
    mask = torch.ones(3, 4)
    mask[0, :2] = 0
    expected = (-2.0 * reference_js(p, t)[mask.bool()].mean()
                + 3.0 * reference_js(p, c)[mask.bool()].mean())
    got = safety_loss(p, c, t, mask, beta=2.0, gamma=3.0, chunk_size=5)
    assert got.item() == pytest.approx(expected.item(), abs=1e-12)
    base2 = safety_loss(p, c, t, mask, log_base=2)
    assert base2.item() == pytest.approx(expected.item() / math.log(2), abs=1e-12)


def test_rejects_mismatched_shapes_and_bad_arguments():
    with pytest.raises(ValueError, match="vocabulary"):
        js_divergence(logits(2, 5), logits(2, 6))
    with pytest.raises(ValueError, match="mask shape"):
        js_divergence(logits(2, 5), logits(2, 5), torch.ones(3))
    with pytest.raises(ValueError, match="log_base"):
        js_divergence(logits(2, 5), logits(2, 5), log_base=1)
    with pytest.raises(ValueError, match="chunk_size"):
        js_divergence(logits(2, 5), logits(2, 5), chunk_size=0)


def test_backward_keeps_only_the_input_logits():
    """The memory claim: nothing of size (positions, V) is saved for backward except the
    (selected) logits themselves — no probabilities, log-probabilities or mixtures."""
    n, vocab = 64, 1000
    p = logits(n, vocab, seed=27, dtype=torch.bfloat16).requires_grad_(True)
    q = logits(n, vocab, seed=28, dtype=torch.bfloat16)
    mask = torch.ones(n)
    mask[::2] = 0
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        safety_loss(p, q, q.clone(), mask, chunk_size=8)
    big = [s for s in saved if len(s[0]) == 2 and s[0][1] == vocab]
    # The three selected (32, V) bfloat16 inputs of the chunked function, nothing in float32.
    assert len(big) == 3 and all(dt == torch.bfloat16 for _, dt in big), big
