"""Fused loss heads (hidden states + output weight → loss, chunk by chunk) against the naive
reference that materialises every logits tensor: value and gradient (policy hidden states,
weight, bias, expert heads and expert logits), fp32 / fp64 / bf16 inputs, double backward and
torch.func nesting, the StepContext path that never forms the policy logits, and the objectives'
``fused`` switch."""

import math

import pytest
import torch

from losscraft import ModelError, RecipeError, StepContext
from losscraft.core.lm_head import capture_head, output_layer
from losscraft.core.penalty import GradientNormPenalty
from losscraft.data.collate import DialogCollator
from losscraft.functional import safety_loss, segment_logprobs, token_logprobs, token_nll
from losscraft.functional.fused_ce import fused_linear_logprobs, fused_linear_nll
from losscraft.functional.fused_js import fused_linear_js, fused_safety_loss
from losscraft.functional.linear_head import LinearHead
from losscraft.models.tiny import tiny_model
from losscraft.types import Example
from losscraft_plugins.objectives.nll import NLLLoss
from losscraft_plugins.objectives.safety_loss import SafetyLoss
from losscraft_plugins.objectives.socially_aware_npair import SociallyAwareNPairLoss
from tiny_float64 import experts, tokenizer  # noqa: F401 - fixtures


def rand(*shape, seed, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)


def leaves(dtype, B=2, T=9, H=8, V=29):
    """Policy head (with bias), clean head, toxic logits; a mask with holes."""
    t = {
        "hp": rand(B, T, H, seed=1, dtype=dtype), "wp": rand(V, H, seed=2, dtype=dtype),
        "bp": rand(V, seed=3, dtype=dtype),
        "hc": rand(B, T, H, seed=4, dtype=dtype), "wc": rand(V, H, seed=5, dtype=dtype),
        "zt": rand(B, T, V, seed=6, dtype=dtype, scale=2.0),
    }
    for x in t.values():
        x.requires_grad_(True)
    mask = (rand(B, T, seed=7) > -0.5).float()
    mask[0, 0] = 0.0
    return t, mask


def naive_safety(t, mask, **kw):
    logits = t["hp"] @ t["wp"].T + t["bp"]
    return safety_loss(logits, t["hc"] @ t["wc"].T, t["zt"], mask, **kw)


def fused_safety(t, mask, **kw):
    value, _, _ = fused_safety_loss(LinearHead(t["hp"], t["wp"], t["bp"]),
                                    LinearHead(t["hc"], t["wc"]), t["zt"], mask, **kw)
    return value


def grads(value, t, create_graph=False):
    return dict(zip(t, torch.autograd.grad(value, list(t.values()), create_graph=create_graph)))


@pytest.mark.parametrize("chunk_size", [None, 1, 4])
def test_fused_safety_equals_naive_fp64(chunk_size):
    t, mask = leaves(torch.float64)
    kw = dict(beta=2.0, gamma=3.0, log_base=2.0, normalizer=13.0)
    ref = naive_safety(t, mask, **kw)
    got = fused_safety(t, mask, chunk_size=chunk_size, **kw)
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    g_ref, g_got = grads(ref, t), grads(got, t)
    for name in t:
        assert torch.allclose(g_got[name], g_ref[name], atol=1e-12), name


def test_fused_safety_fp32_and_bf16_inputs_close_to_fp64():
    t64, mask = leaves(torch.float64)
    ref = naive_safety(t64, mask)
    g_ref = grads(ref, t64)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        t = {k: v.detach().to(dtype).requires_grad_(True) for k, v in t64.items()}
        got = fused_safety(t, mask, chunk_size=5)
        naive = naive_safety(t, mask)
        assert got.dtype == torch.float32  # computed in at least float32
        assert got.item() == pytest.approx(ref.item(), abs=tol * 10)
        # The fused path is as close to the fp64 truth as the naive path in the same dtype.
        assert abs(got.item() - ref.item()) <= abs(naive.item() - ref.item()) + tol
        g_got, g_naive = grads(got, t), grads(naive, t)
        for name in t:
            assert g_got[name].dtype == dtype
            scale = g_ref[name].abs().max().item()
            err = (g_got[name].double() - g_ref[name]).abs().max().item()
            err_naive = (g_naive[name].double() - g_ref[name]).abs().max().item()
            assert err <= max(2 * err_naive, tol * scale), (dtype, name, err, err_naive)


def test_divergences_are_the_per_expert_masked_means():
    t, mask = leaves(torch.float64)
    head = LinearHead(t["hp"], t["wp"], t["bp"])
    value, js = fused_linear_js(head, LinearHead(t["hc"], t["wc"]), t["zt"], mask=mask,
                                coefficients=(1.0, 0.0), log_base=math.e)
    logits = t["hp"] @ t["wp"].T + t["bp"]
    from losscraft.functional import js_divergence
    assert js[0].item() == pytest.approx(js_divergence(logits, t["hc"] @ t["wc"].T, mask).item())
    assert js[1].item() == pytest.approx(js_divergence(logits, t["zt"], mask).item())
    assert value.item() == pytest.approx(js[0].item())
    assert not js.requires_grad


def test_double_backward_matches_naive():
    t, mask = leaves(torch.float64)
    v = {k: rand(*x.shape, seed=20 + i, dtype=torch.float64) for i, (k, x) in enumerate(t.items())}

    def hvp(fn):
        g = grads(fn(), t, create_graph=True)
        dot = sum((g[k] * v[k]).sum() for k in t)
        return grads(dot, t)

    ref = hvp(lambda: naive_safety(t, mask))
    got = hvp(lambda: fused_safety(t, mask, chunk_size=3))
    for name in t:
        assert torch.allclose(got[name], ref[name], atol=1e-10), name


def test_torch_func_grad_and_vjp_match_naive():
    t, mask = leaves(torch.float64)
    frozen_c = LinearHead(t["hc"].detach(), t["wc"].detach())

    def naive(p):
        return safety_loss(p["h"] @ p["w"].T, frozen_c.logits(), t["zt"].detach(), mask)

    def fused(p):
        return fused_safety_loss(LinearHead(p["h"], p["w"]), frozen_c, t["zt"].detach(), mask,
                                 chunk_size=4)[0]

    primals = {"h": t["hp"].detach(), "w": t["wp"].detach()}
    tangent = {"h": rand(2, 9, 8, seed=30, dtype=torch.float64),
               "w": rand(29, 8, seed=31, dtype=torch.float64)}
    out = []
    for fn in (naive, fused):
        g, vjp_fn = torch.func.vjp(torch.func.grad(fn), primals)
        (hv,) = vjp_fn(tangent)
        out.append((g, hv))
    for k in primals:
        assert torch.allclose(out[0][0][k], out[1][0][k], atol=1e-12)
        assert torch.allclose(out[0][1][k], out[1][1][k], atol=1e-10)


def test_fused_js_bad_inputs():
    t, mask = leaves(torch.float32)
    head = LinearHead(t["hp"], t["wp"])
    with pytest.raises(ValueError, match="at least one reference"):
        fused_linear_js(head)
    with pytest.raises(ValueError, match="reference logits shape"):
        fused_linear_js(head, t["zt"][..., :5])
    with pytest.raises(ValueError, match="vocabulary"):
        fused_linear_js(head, LinearHead(t["hc"], t["wc"][:5]))
    with pytest.raises(ValueError, match="mask shape"):
        fused_linear_js(head, t["zt"], mask=mask[:, :3])
    with pytest.raises(ValueError, match="coefficients"):
        fused_linear_js(head, t["zt"], coefficients=(1.0, 2.0))
    with pytest.raises(ValueError, match="chunk_size"):
        fused_linear_js(head, t["zt"], chunk_size=0)
    with pytest.raises(ValueError, match="hidden size"):
        LinearHead(t["hp"], t["wp"][:, :3])


# ------------------------------------------------------------------ fused linear cross-entropy
def ce_leaves(dtype):
    h = rand(3, 7, 6, seed=40, dtype=dtype).requires_grad_(True)
    w = rand(19, 6, seed=41, dtype=dtype).requires_grad_(True)
    b = rand(19, seed=42, dtype=dtype).requires_grad_(True)
    targets = torch.randint(0, 19, (3, 7), generator=torch.Generator().manual_seed(43))
    targets[0, :2] = -100
    mask = (rand(3, 7, seed=44) > -0.3).float()
    return {"h": h, "w": w, "b": b}, targets, mask


@pytest.mark.parametrize("chunk_size", [None, 2])
def test_fused_nll_equals_token_nll(chunk_size):
    t, targets, mask = ce_leaves(torch.float64)
    logits = t["h"] @ t["w"].T + t["b"]
    ref = token_nll(logits.double(), targets, mask, normalizer=11.0)
    got = fused_linear_nll(LinearHead(t["h"], t["w"], t["b"]), targets, mask, normalizer=11.0,
                           chunk_size=chunk_size)
    # token_nll upcasts to float32 only; compare against an exact float64 formula.
    exact = -(torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0).unsqueeze(-1))
              .squeeze(-1) * mask * (targets >= 0)).sum() / 11.0
    assert got.item() == pytest.approx(exact.item(), abs=1e-12)
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    g_exact, g_got = grads(exact, t), grads(got, t)
    for k in t:
        assert torch.allclose(g_got[k], g_exact[k], atol=1e-12), k
    # The objective-level switch: token_nll takes a LinearHead and dispatches to the fused path.
    via = token_nll(LinearHead(t["h"], t["w"], t["b"]), targets, mask, normalizer=11.0)
    assert via.item() == pytest.approx(exact.item(), abs=1e-12)


def test_fused_logprobs_values_gradients_double_backward():
    t, targets, mask = ce_leaves(torch.float64)
    where = mask.bool()

    def exact():
        logits = t["h"] @ t["w"].T + t["b"]
        lp = torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0).unsqueeze(-1))
        return lp.squeeze(-1) * (where & (targets >= 0))

    got = fused_linear_logprobs(LinearHead(t["h"], t["w"], t["b"]), targets, where, chunk_size=3)
    assert torch.allclose(got, exact(), atol=1e-12)
    assert torch.allclose(token_logprobs(LinearHead(t["h"], t["w"], t["b"]), targets, where), got)
    weights = rand(3, 7, seed=50, dtype=torch.float64)
    ge = grads((exact() ** 2 * weights).sum(), t, create_graph=True)
    gg = grads((got ** 2 * weights).sum(), t, create_graph=True)
    for k in t:
        assert torch.allclose(gg[k], ge[k], atol=1e-11), k
    he = grads(sum((g ** 2).sum() for g in ge.values()), t)
    hg = grads(sum((g ** 2).sum() for g in gg.values()), t)
    for k in t:
        assert torch.allclose(hg[k], he[k], atol=1e-9), k


def test_fused_nll_double_backward_and_bf16():
    t, targets, mask = ce_leaves(torch.float64)
    head = LinearHead(t["h"], t["w"], t["b"])
    logits = t["h"] @ t["w"].T + t["b"]
    exact = -(torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0).unsqueeze(-1))
              .squeeze(-1) * mask * (targets >= 0)).sum() / (mask * (targets >= 0)).sum()
    ge = grads(exact, t, create_graph=True)
    gg = grads(fused_linear_nll(head, targets, mask, chunk_size=4), t, create_graph=True)
    he = grads(sum((g ** 2).sum() for g in ge.values()), t)
    hg = grads(sum((g ** 2).sum() for g in gg.values()), t)
    for k in t:
        assert torch.allclose(hg[k], he[k], atol=1e-10), k
    tb = {k: v.detach().bfloat16().requires_grad_(True) for k, v in t.items()}
    got = fused_linear_nll(LinearHead(tb["h"], tb["w"], tb["b"]), targets, mask)
    naive = token_nll(tb["h"] @ tb["w"].T + tb["b"], targets, mask)
    assert got.dtype == torch.float32
    assert abs(got.item() - exact.item()) <= abs(naive.item() - exact.item()) + 2e-2
    for k, g in grads(got, tb).items():
        assert g.dtype == torch.bfloat16 and torch.isfinite(g).all()
        assert (g.double() - ge[k].detach()).abs().max() <= 3e-2 * ge[k].abs().max() + 1e-3


def test_fused_ce_bad_inputs():
    t, targets, mask = ce_leaves(torch.float32)
    head = LinearHead(t["h"], t["w"])
    with pytest.raises(ValueError, match="targets shape"):
        fused_linear_nll(head, targets[:, :3])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fused_linear_logprobs(head, targets.clamp_min(0) + 100)
    with pytest.raises(TypeError, match="LinearHead"):
        fused_linear_nll(t["h"], targets)


# ------------------------------------------------------------------ the StepContext path
EXAMPLES = [
    Example(history=["how do I bake bread?"], response="Mix flour, water and yeast.",
            is_safe=True, negatives=["Burn it.", "Who cares"]),
    Example(history=["you are dumb"], response="You are dumber, idiot.", is_safe=False,
            negatives=["Go away."]),
]


def test_context_head_skips_the_logits(tokenizer, experts):
    model = tiny_model(len(tokenizer), seed=1).double()
    batch = DialogCollator(tokenizer)(EXAMPLES)
    ctx = StepContext(model, batch, experts=experts)
    head = ctx.head
    B, T = batch.input_ids.shape
    assert head.hidden.shape == (B, T, model.config.hidden_size)
    assert head.weight is model.lm_head.weight
    assert ctx._forward().logits.shape[1] == 0  # the model never formed (B, T, V) logits
    reference = model(**batch.model_inputs(torch.float64), use_cache=False).logits
    assert torch.allclose(ctx.logits, reference, atol=1e-10)  # formed on demand from the head
    expert = ctx.expert_head("clean")
    assert not expert.hidden.requires_grad
    assert torch.allclose(expert.logits(), ctx.expert_logits("clean"), atol=1e-10)
    # A context whose forward ran for the logits records the head on the way.
    ctx2 = StepContext(model, batch, experts=experts)
    assert ctx2.logits.shape[1] == T
    assert torch.allclose(ctx2.head.logits(), ctx2.logits, atol=1e-10)


def test_output_layer_refusals(tokenizer):
    model = tiny_model(len(tokenizer), seed=1)
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ModelError, match="final_logit_softcapping"):
        output_layer(model)
    model.config.final_logit_softcapping = None
    model.lm_head = torch.nn.Sequential(model.lm_head)
    with pytest.raises(ModelError, match="not a plain nn.Linear"):
        with capture_head(model):
            pass
    with pytest.raises(ModelError, match="no output layer"):
        output_layer(torch.nn.Linear(2, 2))


def loss_and_grads(loss, model, batch, experts):
    model.zero_grad()
    ctx = StepContext(model, batch, experts=experts)
    out = loss(ctx)
    out.value.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("make", [
    lambda fused: SafetyLoss(fused=fused, log_base=2.0),
    lambda fused: NLLLoss(fused=fused),
    lambda fused: SociallyAwareNPairLoss(fused=fused, margin=0.5),
], ids=["safety_loss", "nll", "socially_aware_npair"])
def test_objectives_fused_switch_same_value_and_gradient(make, tokenizer, experts):
    model = tiny_model(len(tokenizer), seed=1).double()
    plain, fused = make(False), make(True)
    batch = DialogCollator(tokenizer, pack_negatives="negatives" in getattr(plain, "requires",
                                                                            ()))(EXAMPLES)
    a, ga = loss_and_grads(plain, model, batch, experts)
    b, gb = loss_and_grads(fused, model, batch, experts)
    assert b.value.item() == pytest.approx(a.value.item(), rel=1e-6, abs=1e-9)
    for k in ga:
        assert torch.allclose(gb[k], ga[k], atol=1e-7), k
    for k in a.metrics:
        assert float(b.metrics[k]) == pytest.approx(float(a.metrics[k]), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("method", ["exact", "finite_difference"])
def test_penalty_of_fused_safety_loss_matches_unfused(method, tokenizer, experts):
    model = tiny_model(len(tokenizer), seed=1).double()
    batch = DialogCollator(tokenizer)(EXAMPLES)
    results = []
    for fused in (False, True):
        penalty = GradientNormPenalty(SafetyLoss(fused=fused), method=method)
        results.append(loss_and_grads(penalty, model, batch, experts))
    (a, ga), (b, gb) = results
    assert b.value.item() == pytest.approx(a.value.item(), rel=1e-6)
    assert float(b.metrics["grad_norm"]) == pytest.approx(float(a.metrics["grad_norm"]), rel=1e-6)
    for k in ga:
        assert torch.allclose(gb[k], ga[k], rtol=1e-5, atol=1e-9), k


def test_fused_flag_must_be_boolean():
    for factory in (SafetyLoss, NLLLoss, SociallyAwareNPairLoss):
        with pytest.raises(RecipeError) as info:
            factory(fused="yes")
        assert info.value.key == "fused"


@pytest.mark.parametrize("fused", [False, True])
def test_exact_penalty_modes_agree(fused, tokenizer, experts):
    """The exact penalty's reverse over reverse (``layerwise``, the default, and ``autograd``)
    against the torch.func re-evaluation, with one micro-batch and with two (the step's gradient
    as tangent). Tolerance: relative to each tensor's largest entry, 1e-6 — reverse over reverse
    hands its second backward to the trainer's, so first- and second-order cotangents reach the
    tiny Llama's float32 attention softmax and RMSNorm summed, where torch.func sends them
    separately (measured 5e-8); an error in H·g would be O(1)."""
    from losscraft.core.compose import Term, WeightedObjective
    from losscraft.core.step import accumulate_gradients

    batches = [DialogCollator(tokenizer)(EXAMPLES[:1]), DialogCollator(tokenizer)(EXAMPLES[1:])]
    results = {}
    for mode in ("layerwise", "autograd", "torch.func"):
        for step in ([batches[0]], batches):
            model = tiny_model(len(tokenizer), seed=1).double()
            penalty = GradientNormPenalty(SafetyLoss(fused=fused), exact_mode=mode)
            objective = WeightedObjective([Term("safety", SafetyLoss(fused=fused)),
                                           Term("penalty", penalty, 0.5)])
            metrics = accumulate_gradients(objective, model, step, experts=experts)
            results[mode, len(step)] = (metrics, {n: p.grad.clone()
                                                  for n, p in model.named_parameters()})
    for mode in ("layerwise", "autograd"):
        for n_batches in (1, 2):
            (ma, ga), (mb, gb) = results[mode, n_batches], results["torch.func", n_batches]
            assert ma["penalty"] == pytest.approx(mb["penalty"], rel=1e-8)
            for k in ga:
                scale = gb[k].abs().max()
                assert (ga[k] - gb[k]).abs().max() <= 1e-6 * scale, (mode, n_batches, k)


# ------------------------------------------------- compiled chunk bodies, hand-over, chunking
def _js_case(K, dtype=torch.float64):
    """Policy head with bias, K references (heads needing grads, then logits), a holed mask."""
    t, mask = leaves(dtype)
    refs = [LinearHead(t["hc"], t["wc"]), t["zt"]][:K]
    if K == 1:
        del t["zt"]
    return t, mask, refs


def _naive_js_sum(t, mask, refs, coefs):
    from losscraft.bench.reference import naive_js
    logits = t["hp"] @ t["wp"].T + t["bp"]
    total = sum(c * naive_js(logits, r.logits() if isinstance(r, LinearHead) else r)
                for c, r in zip(coefs, refs))
    return (total * mask).sum() / mask.sum()


@pytest.mark.parametrize("K", [1, 2])
@pytest.mark.parametrize("compiled", [True, False])
def test_fused_js_compiled_and_eager_equal_naive(K, compiled, monkeypatch):
    from losscraft.functional import compiled as compiling, js_chunk
    monkeypatch.setattr(js_chunk, "SLICE_ELEMENTS", 29 * 3)  # several compiled slices per chunk
    t, mask, refs = _js_case(K)
    coefs = (3.0, -2.0)[:K]
    ref = _naive_js_sum(t, mask, refs, coefs)
    g_ref = grads(ref, t)
    for chunk in (None, 5):
        got, _ = fused_linear_js(LinearHead(t["hp"], t["wp"], t["bp"]), *refs,
                                 coefficients=coefs, mask=mask, chunk_size=chunk,
                                 compiled=compiled)
        assert got.item() == pytest.approx(ref.item(), abs=1e-12)
        g_got = grads(got, t)
        for name in t:
            assert torch.allclose(g_got[name], g_ref[name], atol=1e-12), (name, chunk)
    if compiled and compiling.compile_available():
        assert not compiling.failed("fused_js")  # the compiled body really ran


def test_compiled_fp32_matches_eager():
    t, mask, refs = _js_case(2, torch.float32)
    head = LinearHead(t["hp"], t["wp"], t["bp"])
    a, _ = fused_linear_js(head, *refs, mask=mask, compiled=True)
    ga = grads(a, t)
    b, _ = fused_linear_js(head, *refs, mask=mask, compiled=False)
    gb = grads(b, t)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    for name in t:
        assert torch.allclose(ga[name], gb[name], rtol=1e-4, atol=1e-6), name


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch):
    from losscraft.functional import compiled as compiling

    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no compiler today")
        return run
    monkeypatch.setattr(compiling, "_compiled", {})
    monkeypatch.setattr(compiling, "_failed", set())
    monkeypatch.setattr(compiling, "compile_available", lambda device="cpu": True)
    monkeypatch.setattr(torch, "compile", broken)
    t, mask, refs = _js_case(2)
    ref = _naive_js_sum(t, mask, refs, (1.0, 1.0))
    with pytest.warns(RuntimeWarning, match="no compiler today"):
        got, _ = fused_linear_js(LinearHead(t["hp"], t["wp"], t["bp"]), *refs, mask=mask,
                                 compiled=True)
    assert compiling.failed("fused_js")
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    got, _ = fused_linear_js(LinearHead(t["hp"], t["wp"], t["bp"]), *refs, mask=mask,
                             compiled=True)  # no second warning: eager from now on
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)


def test_compile_switches(monkeypatch):
    from losscraft.functional import compiled as compiling
    monkeypatch.setattr(compiling, "_have_cxx", lambda: True)
    monkeypatch.delenv(compiling.ENV, raising=False)
    big = compiling.MIN_ELEMENTS
    assert compiling.use_compiled(None, big, "cpu") and not compiling.use_compiled(None, 10, "cpu")
    assert compiling.use_compiled(True, 10, "cpu") and not compiling.use_compiled(False, big, "cpu")
    monkeypatch.setenv(compiling.ENV, "0")
    assert not compiling.use_compiled(True, big, "cpu")
    monkeypatch.delenv(compiling.ENV)
    monkeypatch.setattr(compiling, "_have_cxx", lambda: False)
    assert not compiling.use_compiled(None, big, "cpu")
    with pytest.raises(ValueError, match="compiled must be True, False or None"):
        fused_linear_js(LinearHead(torch.zeros(2, 3), torch.zeros(4, 3)), torch.zeros(2, 4),
                        compiled="yes")


@pytest.mark.parametrize("fused", ["js", "nll"])
def test_forward_gradient_is_handed_over_without_a_copy(fused, monkeypatch):
    """The ∂W buffer formed in the forward becomes W.grad itself (no second (V, H) buffer), a
    second micro-batch adds into it, a scaled loss scales it, and a second backward of a
    retained graph recomputes."""
    import losscraft.functional.linear_head as lh
    seen = []
    real = lh.hand_over

    def spy(pre, need, g_out):
        if pre is not None:
            seen.append([None if g is None else g.data_ptr() for g in pre])
        return real(pre, need, g_out)
    for mod in ("fused_js", "fused_ce"):
        monkeypatch.setattr(f"losscraft.functional.{mod}.hand_over", spy)
    t, mask = leaves(torch.float64)
    hp, wp = t["hp"], t["wp"]
    targets = torch.randint(0, 29, hp.shape[:-1], generator=torch.Generator().manual_seed(0))

    def loss():
        if fused == "js":
            return fused_linear_js(LinearHead(hp, wp), t["zt"].detach(), mask=mask)[0]
        return fused_linear_nll(LinearHead(hp, wp), targets, mask)

    def naive():
        if fused == "js":
            return _naive_js_sum({**t, "bp": torch.zeros(29, dtype=hp.dtype)}, mask,
                                 [t["zt"].detach()], (1.0,))
        logp = torch.log_softmax(hp @ wp.T, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return -(logp * mask).sum() / mask.sum()  # float64 throughout (token_nll is float32)
    (g_ref,) = torch.autograd.grad(naive(), [wp])
    (3.0 * loss()).backward()
    assert wp.grad.data_ptr() == seen[-1][1]  # the forward's buffer, not a copy
    assert torch.allclose(wp.grad, 3.0 * g_ref, atol=1e-12)
    loss().backward()  # a second micro-batch accumulates
    assert torch.allclose(wp.grad, 4.0 * g_ref, atol=1e-12)
    wp.grad = None
    value = loss()
    value.backward(retain_graph=True)
    value.backward()  # handed over already: recomputed
    assert torch.allclose(wp.grad, 2.0 * g_ref, atol=1e-12)


def test_rows_per_chunk_thresholds():
    from losscraft.functional.linear_head import (LONG_INPUT_CHUNKS, default_chunk,
                                                  rows_per_chunk)
    V, H = 49152, 576
    base = default_chunk(V)
    assert rows_per_chunk(H, V, H) == H                      # logits ≤ one weight: one chunk
    assert rows_per_chunk(H + 1, V, H) == H                   # above: chunks of that size
    assert rows_per_chunk(100 * H, V, H, unfused_below=0.5) == H // 2
    assert rows_per_chunk(LONG_INPUT_CHUNKS * base, V, H, unfused_below=0) == 2 * base
    assert rows_per_chunk(LONG_INPUT_CHUNKS * base - 1, V, H, unfused_below=0) == base
    assert rows_per_chunk(H, V, H, 7) == 7 and rows_per_chunk(0, V, H) == 1


@pytest.mark.parametrize("rows", [8, 9, 40])  # H = 8: one chunk at ≤ 8 rows, chunked above
def test_fused_nll_equals_naive_on_both_sides_of_the_unfused_threshold(rows, monkeypatch):
    import losscraft.functional.linear_head as lh
    monkeypatch.setattr(lh, "MIN_CHUNK_ROWS", 2)
    monkeypatch.setattr(lh, "DEFAULT_CHUNK_ELEMENTS", 29 * 3)
    H, V = 8, 29
    h = rand(rows, H, seed=1, dtype=torch.float64).requires_grad_(True)
    w = rand(V, H, seed=2, dtype=torch.float64).requires_grad_(True)
    y = torch.randint(0, V, (rows,), generator=torch.Generator().manual_seed(3))
    expected_chunk = rows if rows <= H else H
    assert lh.rows_per_chunk(rows, V, H) == expected_chunk
    ref = -torch.log_softmax(h @ w.T, -1).gather(-1, y.unsqueeze(-1)).mean()
    got = fused_linear_nll(LinearHead(h, w), y)
    assert got.item() == pytest.approx(ref.item(), abs=1e-12)
    for a, b in zip(torch.autograd.grad(got, [h, w]), torch.autograd.grad(ref, [h, w])):
        assert torch.allclose(a, b, atol=1e-12)
