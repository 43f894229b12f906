"""Gradient-norm penalty: the exact gradient (each exact_mode) equals plain autograd double backward;
the finite difference converges to it; double-backward support is detected and fixed.

Exact-penalty tolerance: the ``"autograd"`` and ``"torch.func"`` modes agree with the reference
to 1e-10 (summation order). ``"layerwise"`` (the default) to 1e-6 on the tiny Llama: its eager
attention and RMSNorm compute in float32 even in a float64 model, and the layerwise double
backward carries a layer's first- and second-order cotangents through those casts separately
(plain autograd sums them first), so they round differently — measured 4e-8. On a model without
float32 casts it agrees to 1e-15 (tests/test_layerwise_double_backward.py).

Finite-difference tolerance (measured on the tiny float64 Llama below): the max-abs error of
``2·H·g`` relative to its largest entry is ≈ 17·r (0.17 at r = 1e-2, 0.017 at 1e-3, 0.0018 at
1e-4) — first order in r, as expected of a one-sided difference. The test asserts ≤ 30·r and a
≥ 5× drop per decade of r.
"""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from losscraft import ModelError, RecipeError, StepContext, Term, WeightedObjective
from losscraft.core.double_backward import check_double_backward, ensure_double_backward
from losscraft.core.loss import LossOutput
from losscraft.core.penalty import EXACT_MODES, GradientNormPenalty
from losscraft.functional import safety_loss, token_nll
from losscraft.models.tiny import tiny_model
from losscraft.types import Batch

VOCAB = 23
#: The exact modes' agreement with plain double backward on the tiny float64 Llama (see above).
EXACT_TOL = {"autograd": 1e-10, "torch.func": 1e-10, "layerwise": 1e-6}


def make_batch(B=2, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    targets = torch.roll(ids, -1, 1)
    targets[:, -1] = -100
    response = torch.zeros(B, T)
    response[:, 3:6] = 1
    return Batch(input_ids=ids, attention_mask=torch.ones(B, T, dtype=torch.long),
                 position_ids=torch.arange(T).expand(B, T).clone(), targets=targets,
                 segment_ids=response.long(), response_mask=response,
                 is_safe=torch.tensor([1.0, 0.0])[:B],
                 negative_mask=torch.zeros(B, 0, dtype=torch.bool),
                 negative_weights=torch.zeros(B, 0))


def frozen_expert(seed):
    model = tiny_model(VOCAB, seed=seed).double()
    model.requires_grad_(False)
    return model


class Safety:
    """The safety loss read from the context (as the plugin does, minus configuration)."""
    experts = ("clean", "toxic")

    def __call__(self, ctx):
        return LossOutput(safety_loss(ctx.logits, ctx.expert_logits("clean"),
                                      ctx.expert_logits("toxic"), ctx.batch.response_mask,
                                      chunk_size=4))


class NLL:
    def __call__(self, ctx):
        return LossOutput(token_nll(ctx.logits, ctx.batch.targets, ctx.batch.response_mask))


class Constant:
    def __call__(self, ctx):
        return LossOutput(torch.tensor(1.5, dtype=torch.float64))


class MLPLM(nn.Module):
    """A non-Hugging-Face 'language model': embedding → MLP → vocabulary logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.embed = nn.Embedding(VOCAB, 8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, VOCAB))

    def forward(self, input_ids, attention_mask=None, position_ids=None, **_):
        return SimpleNamespace(logits=self.mlp(self.embed(input_ids)))


@pytest.fixture(scope="module")
def experts():
    return {"clean": frozen_expert(11), "toxic": frozen_expert(12)}


def reference_penalty_grad(model, term, batch, experts):
    """∇‖∇L‖² by plain autograd double backward."""
    params = [p for p in model.parameters() if p.requires_grad]
    value = term(StepContext(model, batch, experts=experts)).value
    grads = torch.autograd.grad(value, params, create_graph=True)
    penalty = sum((g * g).sum() for g in grads)
    return penalty.detach(), torch.autograd.grad(penalty, params)


def penalty_grad(model, penalty, batch, experts):
    model.zero_grad()
    out = penalty(StepContext(model, batch, experts=experts))
    out.value.backward()
    return out, [p.grad.clone() for p in model.parameters() if p.requires_grad]


def max_rel_err(got, ref):
    scale = max(r.abs().max().item() for r in ref)
    return max((a - b).abs().max().item() for a, b in zip(got, ref)) / scale


@pytest.mark.parametrize("mode", EXACT_MODES)
def test_exact_equals_double_backward_on_tiny_llama(experts, mode):
    model, batch = tiny_model(VOCAB, seed=1).double(), make_batch()
    ref_value, ref = reference_penalty_grad(model, Safety(), batch, experts)
    penalty = GradientNormPenalty(Safety(), exact_mode=mode)
    penalty.prepare(model)  # as the trainer does: the layers are wrapped before the forward
    out, got = penalty_grad(model, penalty, batch, experts)
    assert out.value.item() == pytest.approx(ref_value.item(), rel=1e-12)
    assert out.metrics["penalty"].item() == pytest.approx(ref_value.item(), rel=1e-12)
    assert out.metrics["grad_norm"].item() == pytest.approx(ref_value.sqrt().item(), rel=1e-12)
    assert max(r.abs().max().item() for r in ref) > 1e-3
    assert max_rel_err(got, ref) < EXACT_TOL[mode]


def test_exact_equals_double_backward_on_small_mlp():
    model, batch = MLPLM().double(), make_batch(seed=1)
    ref_value, ref = reference_penalty_grad(model, NLL(), batch, {})
    out, got = penalty_grad(model, GradientNormPenalty(NLL()), batch, {})
    assert out.value.item() == pytest.approx(ref_value.item(), rel=1e-12)
    assert max_rel_err(got, ref) < 1e-10


def test_finite_difference_approaches_exact_as_radius_shrinks(experts):
    model, batch = tiny_model(VOCAB, seed=1).double(), make_batch()
    _, ref = reference_penalty_grad(model, Safety(), batch, experts)
    errors = []
    for radius in (1e-2, 1e-3, 1e-4):
        penalty = GradientNormPenalty(Safety(), method="finite_difference", radius=radius)
        out, got = penalty_grad(model, penalty, batch, experts)
        errors.append(max_rel_err(got, ref))
        assert errors[-1] <= 30 * radius
    assert errors[0] > 5 * errors[1] > 25 * errors[2]


def test_finite_difference_keeps_the_shared_graph_for_the_main_term(experts):
    """Safety + λ·penalty on one context: one backward gives ∇L + λ·2Hg."""
    model, batch = tiny_model(VOCAB, seed=2).double(), make_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    ctx = StepContext(model, batch, experts=experts)
    (g,) = [torch.autograd.grad(Safety()(ctx).value, params)]
    _, hg2 = reference_penalty_grad(model, Safety(), batch, experts)
    objective = WeightedObjective([
        Term("safety", Safety()),
        Term("flat", GradientNormPenalty(Safety(), method="finite_difference", radius=1e-5),
             weight=0.5)])
    model.zero_grad()
    out = objective(StepContext(model, batch, experts=experts))
    out.value.backward()
    expected = [a + 0.5 * b for a, b in zip(g, hg2)]
    assert max_rel_err([p.grad for p in params], expected) < 1e-3
    assert {"flat/grad_norm", "flat/penalty", "flat/term"} <= set(out.metrics)


@pytest.mark.parametrize("method", ["exact", "finite_difference"])
def test_zero_for_a_constant_term(method):
    model = MLPLM().double()
    out, got = penalty_grad(model, GradientNormPenalty(Constant(), method=method), make_batch(),
                            {})
    assert out.value.item() == 0.0
    assert all((g == 0).all() for g in got)


def test_expert_logits_are_computed_once_and_reused(experts):
    calls = []
    counted = {name: CountingExpert(m, calls, name) for name, m in experts.items()}
    model = tiny_model(VOCAB, seed=1).double()
    for method in ("exact", "finite_difference"):
        calls.clear()
        GradientNormPenalty(Safety(), method=method)(
            StepContext(model, make_batch(), experts=counted)).value.backward()
        assert sorted(calls) == ["clean", "toxic"]


class CountingExpert(nn.Module):
    def __init__(self, inner, calls, name):
        super().__init__()
        self.inner, self.calls, self.name = inner, calls, name

    def forward(self, **kwargs):
        self.calls.append(self.name)
        return self.inner(**kwargs)


def test_rejects_bad_arguments():
    with pytest.raises(RecipeError, match="method"):
        GradientNormPenalty(NLL(), method="hessian")
    with pytest.raises(RecipeError, match="radius"):
        GradientNormPenalty(NLL(), radius=0.0)
    with pytest.raises(RecipeError, match="exact_mode"):
        GradientNormPenalty(NLL(), exact_mode="forward-over-reverse")
    assert GradientNormPenalty(Safety()).experts == ("clean", "toxic")


def sdpa_llama():
    model = tiny_model(VOCAB, seed=1)
    model.set_attn_implementation("sdpa")
    return model


def test_ensure_double_backward_switches_sdpa_to_eager():
    model = sdpa_llama()
    assert any("sdpa" in p for p in check_double_backward(model))
    notices = []
    ensure_double_backward(model, log=notices.append)
    assert model.config._attn_implementation == "eager"
    assert check_double_backward(model) == []
    assert len(notices) == 1 and "eager" in notices[0]


def test_ensure_double_backward_without_switch_says_what_to_change():
    with pytest.raises(ModelError, match="eager.*finite_difference"):
        ensure_double_backward(sdpa_llama(), switch=False)


def test_gradient_checkpointing_is_detected_and_turned_off():
    model = tiny_model(VOCAB, seed=1)
    model.activation_checkpointing_enable()
    assert any("checkpointing" in p for p in check_double_backward(model))
    notices = []
    ensure_double_backward(model, log=notices.append)
    assert check_double_backward(model) == [] and "checkpointing" in notices[0]


def test_exact_penalty_on_an_sdpa_model_switches_and_works(caplog):
    model, batch = sdpa_llama(), make_batch()
    with caplog.at_level("WARNING"):
        out = GradientNormPenalty(NLL())(StepContext(model, batch))
        out.value.backward()
    assert model.config._attn_implementation == "eager"
    assert "switched attention" in caplog.text
    assert torch.isfinite(out.value)
    with pytest.raises(ModelError):
        GradientNormPenalty(NLL(), switch_attention=False)(StepContext(sdpa_llama(), batch))


class CountingSafety(Safety):
    def __init__(self):
        self.calls = 0

    def __call__(self, ctx):
        self.calls += 1
        return super().__call__(ctx)


@pytest.mark.parametrize("method,tol", [("exact", EXACT_TOL["layerwise"]),
                                        ("finite_difference", 1e-3)])
def test_one_loss_as_term_and_penalty_subject_is_evaluated_once(experts, method, tol):
    """FlatGD as recipes build it: the same safety-loss instance is a term and the penalty's
    subject; the context evaluates it once on the shared forward, and one backward still gives
    ∇L + λ·2Hg."""
    model, batch = tiny_model(VOCAB, seed=4).double(), make_batch(seed=3)
    params = [p for p in model.parameters() if p.requires_grad]
    (g,) = [torch.autograd.grad(Safety()(StepContext(model, batch, experts=experts)).value,
                                params)]
    _, hg2 = reference_penalty_grad(model, Safety(), batch, experts)
    safety = CountingSafety()
    radius = 1e-5 if method == "finite_difference" else 1e-2
    objective = WeightedObjective([
        Term("safety", safety),
        Term("flat", GradientNormPenalty(safety, method=method, radius=radius), weight=0.5)])
    model.zero_grad()
    objective(StepContext(model, batch, experts=experts)).value.backward()
    assert safety.calls == (1 if method == "exact" else 2)  # FD: one more at θ + r·ĝ
    expected = [a + 0.5 * b for a, b in zip(g, hg2)]
    assert max_rel_err([p.grad for p in params], expected) < tol
