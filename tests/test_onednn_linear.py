"""The oneDNN path of the fused heads' graph-free logits: same values as ``F.linear``, taken only
where no graph is wanted (CPU float32), switched off by ``LOSSCRAFT_ONEDNN=0``, and a failing
build falls back to ``F.linear`` with one warning."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from losscraft.functional import onednn_linear
from losscraft.functional.fused_ce import fused_linear_nll
from losscraft.functional.fused_js import fused_linear_js
from losscraft.functional.linear_head import LinearHead

needs_onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(),
                                  reason="this torch build has no oneDNN")


def operands(rows=(3, 7), hidden=16, vocab=41, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*rows, hidden, generator=g), torch.randn(vocab, hidden, generator=g),
            torch.randn(vocab, generator=g) if bias else None)


@pytest.fixture
def calls(monkeypatch):
    """Counts the oneDNN calls (and still makes them)."""
    real = onednn_linear._pointwise
    seen = []

    def counting(rows, weight, bias):
        seen.append(tuple(rows.shape))
        return real(rows, weight, bias)

    monkeypatch.setattr(onednn_linear, "_pointwise", counting)
    monkeypatch.delenv(onednn_linear.ENV, raising=False)
    return seen


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_equals_f_linear_on_rows_and_batches(bias, calls):
    h, w, b = operands(bias=bias)
    with torch.no_grad():
        got = onednn_linear.linear(h, w, b)
    assert calls == [(21, 16)]  # (3, 7) positions as rows
    assert got.shape == (3, 7, 41)
    assert torch.allclose(got, F.linear(h, w, b), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_taken_only_where_no_graph_is_wanted(calls, monkeypatch):
    h, w, b = operands()
    w.requires_grad_(True)
    out = onednn_linear.linear(h, w, b)  # grad wanted: F.linear, with a graph
    assert out.requires_grad and calls == []
    out.sum().backward()
    assert w.grad is not None
    with torch.no_grad():
        onednn_linear.linear(h, w, b)
    assert len(calls) == 1
    with torch.no_grad():
        onednn_linear.linear(h.double(), w.double(), b.double())  # float64: F.linear
        torch.func.vmap(lambda x: onednn_linear.linear(x, w, b))(h)  # a transform: F.linear
    assert len(calls) == 1
    monkeypatch.setenv(onednn_linear.ENV, "0")
    with torch.no_grad():
        onednn_linear.linear(h, w, b)
    assert len(calls) == 1


def test_failing_build_falls_back_with_one_warning(monkeypatch):
    def broken(*_args):
        raise RuntimeError("no such op in this build")

    monkeypatch.setattr(onednn_linear, "_pointwise", broken)
    monkeypatch.setattr(onednn_linear, "_broken", False)
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    h, w, b = operands()
    with pytest.warns(RuntimeWarning, match="oneDNN linear failed"):
        with torch.no_grad():
            first = onednn_linear.linear(h, w, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.no_grad():
            second = onednn_linear.linear(h, w, b)
    assert torch.equal(first, F.linear(h, w, b)) and torch.equal(second, first)


@needs_onednn
def test_fused_heads_take_it_and_match_f_linear(calls, monkeypatch):
    """The fused heads' forward logits go through oneDNN; with it switched off the values and
    gradients agree to float32 rounding."""
    def run():
        h, w, b = operands(rows=(2, 40), hidden=24, vocab=300, seed=1)
        h.requires_grad_(True), w.requires_grad_(True)
        ref = LinearHead(*operands(rows=(2, 40), hidden=24, vocab=300, bias=False, seed=2))
        js, _ = fused_linear_js(LinearHead(h, w, b), ref, chunk_size=32, compiled=False)
        targets = torch.randint(0, 300, (2, 40), generator=torch.Generator().manual_seed(3))
        nll = fused_linear_nll(LinearHead(h, w, b), targets, chunk_size=32)
        (js + nll).backward()
        return js.detach(), nll.detach(), h.grad, w.grad

    fast = run()
    assert len(calls) >= 2 * 3 + 3  # policy and reference per JS chunk, one per CE chunk
    monkeypatch.setenv(onednn_linear.ENV, "off")
    plain = run()
    for a, b in zip(fast, plain):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_onednn
def test_bench_naive_forms_logits_as_a_model_does(calls):
    """The benchmark's unfused implementations get their policy and expert logits through plain
    ``F.linear`` (as an ``nn.Linear`` lm_head forms them), so a faster fused path never speeds
    up the baseline it is compared with."""
    from losscraft.bench.grid import Point
    from losscraft.bench.inputs import SyntheticContext, make_inputs

    inputs = make_inputs(Point(tokens=12, vocab=32, hidden=8, input="hidden"),
                         expert_names=("clean",), negatives=False)
    ctx = SyntheticContext(inputs)
    with torch.no_grad():
        ctx.logits, ctx.expert_logits("clean")
    assert calls == []
    expert = inputs.expert_heads["clean"]
    assert torch.equal(ctx.expert_logits("clean"), F.linear(expert.hidden, expert.weight))
    with torch.no_grad():
        expert.logits()  # the library's own head: oneDNN
    assert len(calls) == 1
