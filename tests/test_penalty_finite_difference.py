"""The finite-difference penalty against the exact one on a float64 toy (the tiny Llama of
tests/test_penalty.py), its relative shift, and the warning where the shift is below the
compute dtype's resolution.

Measured here (relative error ‖got − exact‖ / ‖exact‖ of ``2·H·g``, ‖θ‖ = 13): the recipe
default — central difference, shift eps = 1e-4 of ‖θ‖ — 9·10⁻⁵ (float64; 1.5·10⁻⁴ with the model
in float32, where eps = 1e-5 is already worse, 1.1·10⁻³, from cancellation); central at eps =
1e-3: 0.87%, 3e-3: 7.3% (second order). The forward difference at the absolute r = 0.1: 77%, at
r = 1e-2: 10.4%, at 1e-3: 1.05%. The tolerance (1%) fails for the forward difference at r = 0.1
(asserted, so the test can tell the two apart).
"""

import math

import pytest
import torch

from losscraft import StepContext
from losscraft.core.penalty import GradientNormPenalty
from losscraft.models.tiny import tiny_model
from losscraft.recipe.schema import PenaltySpec
from test_penalty import VOCAB, Safety, frozen_expert, make_batch, reference_penalty_grad

TOL = 0.01


@pytest.fixture(scope="module")
def experts():
    return {"clean": frozen_expert(11), "toxic": frozen_expert(12)}


def _default_penalty(**changes) -> GradientNormPenalty:
    """The penalty a recipe builds with every finite-difference setting left at its default."""
    spec = PenaltySpec(weight=1.0, method="finite_difference")
    args = dict(method=spec.method, radius=spec.radius, difference=spec.difference,
                eps=spec.eps or None, key="stages.main.terms.safety.penalty")
    return GradientNormPenalty(Safety(), **{**args, **changes})


def _grad(model, penalty, batch, experts, **ctx_args):
    model.zero_grad()
    out = penalty(StepContext(model, batch, experts=experts, **ctx_args))
    out.value.backward()
    return out, [p.grad.clone() for p in model.parameters()]


def _rel(got, ref) -> float:
    num = math.sqrt(sum(float((a - b).square().sum()) for a, b in zip(got, ref)))
    return num / math.sqrt(sum(float(r.square().sum()) for r in ref))


def test_default_finite_difference_is_within_one_percent_of_exact(experts):
    model, batch = tiny_model(VOCAB, seed=1).double(), make_batch()
    value, ref = reference_penalty_grad(model, Safety(), batch, experts)
    out, got = _grad(model, _default_penalty(), batch, experts)
    assert out.value.item() == pytest.approx(value.item(), rel=1e-12)
    assert _rel(got, ref) < 1e-4 < TOL
    assert out.metrics["fd_passes"] == 2.0
    assert out.metrics["shift"] == pytest.approx(PenaltySpec().eps, rel=1e-12)


def test_forward_difference_at_r_0_1_fails_the_tolerance_central_passes(experts):
    model, batch = tiny_model(VOCAB, seed=1).double(), make_batch()
    _, ref = reference_penalty_grad(model, Safety(), batch, experts)
    errors = {}
    for difference in ("forward", "central"):
        for radius in (0.1, 0.01):
            penalty = _default_penalty(difference=difference, eps=None, radius=radius)
            errors[difference, radius] = _rel(_grad(model, penalty, batch, experts)[1], ref)
    assert errors["forward", 0.1] > TOL
    assert errors["forward", 0.01] > errors["central", 0.01]
    # second order: a tenth of r gives about a hundredth of the error
    assert errors["central", 0.01] < errors["central", 0.1] / 30
    assert errors["central", 0.01] < TOL


def test_relative_shift_is_eps_of_the_parameters_norm(experts):
    """The same eps is the same relative shift at any parameter scale."""
    batch = make_batch()
    for scale in (1.0, 3.0):
        model = tiny_model(VOCAB, seed=1).double()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
        out, _ = _grad(model, _default_penalty(eps=0.02), batch, experts)
        assert out.metrics["shift"] == pytest.approx(0.02, rel=1e-12)


def test_shift_below_bf16_resolution_warns_with_the_key(experts):
    model, batch = tiny_model(VOCAB, seed=1), make_batch()
    float_experts = {n: frozen_expert(s).float() for n, s in (("clean", 11), ("toxic", 12))}
    with pytest.warns(RuntimeWarning, match=r"stages\.main\.terms\.safety\.penalty\.eps.*"
                                            r"bfloat16"):
        _grad(model, _default_penalty(), batch, float_experts, autocast_dtype=torch.bfloat16)
    import warnings
    with warnings.catch_warnings():  # fp32 at the default eps: nothing to say
        warnings.simplefilter("error", RuntimeWarning)
        _grad(model, _default_penalty(), batch, float_experts)


def test_bad_settings_are_refused_with_their_key():
    from losscraft import RecipeError

    with pytest.raises(RecipeError, match="difference") as err:
        GradientNormPenalty(Safety(), method="finite_difference", difference="backward")
    assert err.value.key == "difference"
    with pytest.raises(RecipeError, match="eps"):
        GradientNormPenalty(Safety(), method="finite_difference", eps=0.0)
