"""Flatness under LoRA: the reading the penalty implements, checked against a direct computation
on the merged weights; the penalty's and the objective's gradients summed in one ``.grad``
(one optimizer state); and what ``lora.init_b_std`` changes about the first step.

The reading (also in recipes/flatgd.toml): under a LoRA adapter ``W = W₀ + s·B·A`` the penalty
is ``‖∇_{A,B} L_S‖² = Σ_layers s²·(‖G·Aᵀ‖² + ‖Bᵀ·G‖²)`` with ``G = ∇_W L_S`` the gradient with
respect to the *merged* weight: ``G`` pulled back onto the directions ``dW = s·(dB·A + B·dA)`` the
adapter can move the merged weight in (measured in the adapter's coordinates). With ``B = 0``
that is ``s²·‖G·Aᵀ‖²``: ``G`` restricted to the row space of ``A``.
"""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model

from losscraft import StepContext, Term, WeightedObjective
from losscraft.core import accumulate_gradients
from losscraft.core.penalty import GradientNormPenalty
from losscraft.models.adapters import init_lora_b
from losscraft.models.tiny import tiny_model
from test_penalty import NLL, VOCAB, Safety, frozen_expert, make_batch

TARGETS = ["q_proj", "v_proj", "down_proj"]
R, ALPHA = 4, 8


@pytest.fixture(scope="module")
def experts():
    return {"clean": frozen_expert(11), "toxic": frozen_expert(12)}


def _lora(std: float = 0.0):
    torch.manual_seed(0)
    model = get_peft_model(tiny_model(VOCAB, seed=1).double(),
                           LoraConfig(r=R, lora_alpha=ALPHA, target_modules=TARGETS))
    if std:
        init_lora_b(model, std)
    return model


def test_penalty_is_the_merged_gradient_pulled_back_onto_the_adapter(experts):
    model, batch = _lora(std=0.05), make_batch()
    penalty = GradientNormPenalty(Safety(), method="exact", exact_mode="torch.func")
    value = penalty(StepContext(model, batch, experts=experts)).value.item()
    # direct: G = ∇_W L_S of a plain model holding the merged weights
    merged = copy.deepcopy(model).merge_and_unload()
    weights = {n: m.weight for n, m in merged.named_modules()
               if n.rsplit(".", 1)[-1] in TARGETS}
    for w in merged.parameters():
        w.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    loss = Safety()(StepContext(merged, batch, experts=experts)).value
    grads = dict(zip(weights, torch.autograd.grad(loss, list(weights.values()))))
    s = ALPHA / R
    direct = 0.0
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in TARGETS or not hasattr(module, "lora_A"):
            continue
        a, b = (m["default"].weight.detach() for m in (module.lora_A, module.lora_B))
        g = grads[name.replace("base_model.model.", "", 1)]
        direct += float((s * g @ a.T).square().sum() + (s * b.T @ g).square().sum())
    assert len(grads) == 2 * len(TARGETS)
    assert value == pytest.approx(direct, rel=1e-9)


def test_penalty_and_objective_share_one_gradient(experts):
    """One backward: ``.grad`` = ∇(rest) + λ·2·H·g, the sum one optimizer state sees."""
    batch = make_batch()
    grads, metrics = [], None
    for lam in (0.0, 0.5):
        model = _lora(std=0.05)
        terms = [Term("lm", NLL()), Term("safety", Safety())]
        if lam:
            terms.append(Term("flat", GradientNormPenalty(
                Safety(), method="finite_difference", difference="central", eps=1e-4), lam))
        metrics = accumulate_gradients(WeightedObjective(terms), model, [batch],
                                       experts=experts)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    rest, total = grads
    pen = sum(float((total[n] - rest[n]).square().sum()) for n in rest) ** 0.5
    assert pen > 0
    assert metrics["flat/grad_norm_penalty"] == pytest.approx(pen, rel=1e-6)
    assert metrics["flat/grad_norm_rest"] == pytest.approx(
        sum(float(g.square().sum()) for g in rest.values()) ** 0.5, rel=1e-9)


@pytest.mark.parametrize("std", [0.0, 1e-3])
def test_b_init_decides_whether_a_has_an_objective_gradient(experts, std):
    """B = 0: the objective's gradient w.r.t. A is exactly 0 and only the penalty's is not —
    what Adam would turn into full steps. B ~ N(0, std²): A has the objective's gradient."""
    batch = make_batch()
    out = {}
    for lam in (0.0, 0.5):
        model = _lora(std)
        terms = [Term("lm", NLL()), Term("safety", Safety())]
        if lam:
            terms.append(Term("flat", GradientNormPenalty(Safety(), method="exact",
                                                           exact_mode="torch.func"), lam))
        accumulate_gradients(WeightedObjective(terms), model, [batch], experts=experts)
        out[lam] = max(float(p.grad.abs().max()) for n, p in model.named_parameters()
                       if ".lora_A." in n)
    if std == 0.0:
        assert out[0.0] == 0.0 and out[0.5] > 0.0
    else:
        assert out[0.0] > 0.0
        b = [p for n, p in _lora(std).named_parameters() if ".lora_B." in n]
        assert all(float(p.std()) == pytest.approx(std, rel=0.5) for p in b)


def test_init_b_std_is_a_checked_recipe_key(tmp_path, tiny_recipe):
    from losscraft import RecipeError
    from losscraft.recipe import load_recipe

    path = tiny_recipe()
    text = path.read_text() + "\n[lora]\nr = 2\ninit_b_std = -1.0\n"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.key == "lora.init_b_std"
