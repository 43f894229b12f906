"""The penalty's share of the step, ``‖∇(λ‖g‖²)‖ / ‖∇(rest of the objective)‖``, equals its
definition computed by plain double backward on a float64 toy; a run whose penalty never
reaches 1e-4 of the rest (λ = 1e-12) is warned about at the end of the stage."""

import io
import math

import pytest
import torch
from rich.console import Console

from losscraft import StepContext, Term, WeightedObjective
from losscraft.core import accumulate_gradients
from losscraft.core.penalty import GradientNormPenalty
from losscraft.models.tiny import tiny_model
from losscraft.recipe import load_recipe
from losscraft.testing.builders import recipe_toml
from losscraft.trainer import Trainer
from losscraft.trainer.penalty_watch import MIN_SHARE, PenaltyShareWatch
from test_penalty import NLL, VOCAB, Safety, frozen_expert, make_batch

LAMBDA = 0.3


@pytest.fixture(scope="module")
def experts():
    return {"clean": frozen_expert(11), "toxic": frozen_expert(12)}


def _reference(model, batches, experts):
    """(‖g‖², ‖∇(λ‖g‖²)‖, ‖∇(NLL + L_S)‖) over the step's batches by plain autograd."""
    params = list(model.parameters())
    safety = sum(Safety()(StepContext(model, b, step_batches=batches, experts=experts)).value
                 for b in batches)
    grads = torch.autograd.grad(safety, params, create_graph=True)
    sq = sum((g * g).sum() for g in grads)
    pen = torch.autograd.grad(LAMBDA * sq, params, retain_graph=True)
    rest_value = safety + sum(NLL()(StepContext(model, b, step_batches=batches)).value
                              for b in batches)
    rest = torch.autograd.grad(rest_value, params)
    norm = lambda ts: math.sqrt(sum(float(t.square().sum()) for t in ts))  # noqa: E731
    return float(sq.detach()), norm(pen), norm(rest)


@pytest.mark.parametrize("method,mode,tol", [("finite_difference", "layerwise", 1e-3),
                                             ("exact", "torch.func", 1e-7)])
def test_share_equals_its_definition(experts, method, mode, tol):
    model = tiny_model(VOCAB, seed=1).double()
    batches = [make_batch(seed=0), make_batch(seed=1)]  # two micro-batches: the step's g
    penalty = GradientNormPenalty(Safety(), method=method, exact_mode=mode, difference="central",
                                  eps=1e-4)
    objective = WeightedObjective([Term("lm", NLL()), Term("safety", Safety()),
                                   Term("flat", penalty, LAMBDA)])
    model.zero_grad()
    metrics = accumulate_gradients(objective, model, batches, experts=experts)
    sq, pen, rest = _reference(model, batches, experts)
    assert metrics["flat"] == pytest.approx(sq, rel=1e-10)
    assert metrics["flat/weighted"] == pytest.approx(LAMBDA * sq, rel=1e-10)
    assert metrics["flat/grad_norm_penalty"] == pytest.approx(pen, rel=tol)
    assert metrics["flat/grad_norm_rest"] == pytest.approx(rest, rel=tol)
    assert metrics["flat/share"] == pytest.approx(pen / rest, rel=2 * tol)


def test_watch_keeps_the_largest_share_per_term():
    watch = PenaltyShareWatch()
    for share in (1e-6, 3e-5, 2e-6):
        watch.see({"a/share": share, "b/share": 10 * share, "loss": 1.0})
    assert watch.largest == pytest.approx({"a": 3e-5, "b": 3e-4})
    lines = watch.warnings("main")
    assert len(lines) == 1 and "'a'" in lines[0] and "raise λ" in lines[0]
    assert 3e-4 > MIN_SHARE


def _run(tmp_path, registry, weight):
    path = tmp_path / f"w{weight}.toml"
    path.write_text(recipe_toml(
        run={"seed": 3, "output_dir": tmp_path / f"run{weight}"},
        model={"plugin": "tiny", "seed": 1},
        experts={"clean": {"plugin": "tiny", "seed": 5}, "toxic": {"plugin": "tiny", "seed": 6}},
        stages=[{"name": "main", "max_steps": 2, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0,
                 "max_context_tokens": 48, "max_response_tokens": 16,
                 "data": [{"plugin": "toy_dialogs", "count": 8}],
                 "terms": [{"name": "lm", "plugin": "nll"},
                           {"name": "safety", "plugin": "safety_loss",
                            "penalty": {"weight": weight, "method": "finite_difference"}}]}]))
    out = io.StringIO()
    result = Trainer(load_recipe(path), registry=registry, show_progress=False,
                     console=Console(file=out, width=400)).run()
    return out.getvalue(), result


def test_stage_warns_when_the_penalty_is_not_acting(tmp_path, registry):
    text, result = _run(tmp_path, registry, 1e-12)
    assert "the penalty is not acting: raise λ" in text
    assert "safety_grad_penalty" in text
    import json
    rows = [json.loads(l) for l in result.metrics.read_text().splitlines()]
    assert all(0 < r["safety_grad_penalty/share"] < 1e-9 for r in rows)
    text, _ = _run(tmp_path, registry, 10.0)
    assert "not acting" not in text
