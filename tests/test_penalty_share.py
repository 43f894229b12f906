"""The penalty's share of the step, ``‖∇(λ‖g‖²)‖ / ‖∇(rest of the objective)‖``, equals its
definition computed by plain double backward on a float64 toy, on every route (the finite
difference, ``torch.func``, and reverse over reverse — layerwise and autograd — whose penalty
gradient is split off the trainer's backward on the steps that measure it, leaving the step's
gradient as it was); ``share_every`` picks those steps; a run whose penalty never reaches 1e-4 of
the rest (λ = 1e-12) is warned about at the end of the stage. FSDP: tests/test_fsdp.py."""

import io
import math

import pytest
import torch
from rich.console import Console

from losscraft import StepContext, Term, WeightedObjective
from losscraft.core import accumulate_gradients, layerwise_double_backward
from losscraft.errors import RecipeError
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


def _step(model, batches, experts, *, method="exact", mode="layerwise", share_every=1,
          step=0):
    """One FlatGD step of ``batches`` from zeroed gradients; its metrics."""
    penalty = GradientNormPenalty(Safety(), method=method, exact_mode=mode, difference="central",
                                  eps=1e-4, share_every=share_every)
    objective = WeightedObjective([Term("lm", NLL()), Term("safety", Safety()),
                                   Term("flat", penalty, LAMBDA)])
    model.zero_grad()
    return accumulate_gradients(objective, model, batches, experts=experts, step=step)


@pytest.mark.parametrize("method,mode,tol", [("finite_difference", "layerwise", 1e-3),
                                             ("exact", "torch.func", 1e-7),
                                             ("exact", "layerwise", 1e-7),
                                             ("exact", "autograd", 1e-7)])
@pytest.mark.parametrize("micro", [1, 2])
def test_share_equals_its_definition(experts, method, mode, tol, micro):
    model = tiny_model(VOCAB, seed=1).double()
    batches = [make_batch(seed=s) for s in range(micro)]  # two micro-batches: the step's g
    metrics = _step(model, batches, experts, method=method, mode=mode)
    if mode == "layerwise" and method == "exact":  # the wrapped layers' route is the one tested
        assert layerwise_double_backward.is_enabled(model)
    sq, pen, rest = _reference(model, batches, experts)
    assert metrics["flat"] == pytest.approx(sq, rel=1e-10)
    assert metrics["flat/weighted"] == pytest.approx(LAMBDA * sq, rel=1e-10)
    assert metrics["flat/grad_norm_penalty"] == pytest.approx(pen, rel=tol)
    assert metrics["flat/grad_norm_rest"] == pytest.approx(rest, rel=tol)
    assert metrics["flat/share"] == pytest.approx(pen / rest, rel=2 * tol)


@pytest.mark.parametrize("micro", [1, 2])
def test_reverse_over_reverse_logs_the_share_torch_func_logs(experts, micro):
    batches = [make_batch(seed=s) for s in range(micro)]
    logged = {mode: _step(tiny_model(VOCAB, seed=1).double(), batches, experts, mode=mode)
              for mode in ("torch.func", "layerwise", "autograd")}
    for mode in ("layerwise", "autograd"):
        for key in ("flat/share", "flat/grad_norm_penalty", "flat/grad_norm_rest",
                    "flat/weighted"):
            assert logged[mode][key] == pytest.approx(logged["torch.func"][key], rel=1e-9), key


def _gap(a, b):
    """max |a − b| over every parameter's gradient, relative to b's largest entry."""
    return (max(float((a[n] - b[n]).abs().max()) for n in b)
            / max(float(t.abs().max()) for t in b.values()))


@pytest.mark.parametrize("mode", ["layerwise", "autograd"])
@pytest.mark.parametrize("micro", [1, 2])
def test_splitting_off_the_penalty_gradient_leaves_the_step_gradient(experts, mode, micro):
    """Split (share_every = 1) against the carrier through the trainer's backward (0), and
    against ``torch.func``, which also forms ``2·H·g`` apart from the rest (gaps relative to the
    largest entry, float64). Split and unsplit differ by ~1e-7 (measured 8.7e-8 at 1
    micro-batch, 7.2e-8 / 7.7e-8 at 2, layerwise / autograd): HF's Llama RMSNorm computes in
    float32, which rounds the gradient passing through it, summed or in two parts — plain
    one-backward autograd of the whole objective equals the unsplit route exactly. The split
    route equals torch.func's to 2e-19 (5.4e-10 layerwise at 2 micro-batches, the same
    rounding)."""
    batches = [make_batch(seed=s) for s in range(micro)]
    grads = {}
    for mode_, every in ((mode, 0), (mode, 1), ("torch.func", 1)):
        model = tiny_model(VOCAB, seed=1).double()
        metrics = _step(model, batches, experts, mode=mode_, share_every=every)
        assert ("flat/share" in metrics) == bool(every)
        grads[mode_, every] = {n: p.grad.clone() for n, p in model.named_parameters()}
    print(f"{mode}, {micro} micro-batches: split vs torch.func "
          f"{_gap(grads[mode, 1], grads['torch.func', 1]):.2g}, vs unsplit "
          f"{_gap(grads[mode, 1], grads[mode, 0]):.2g}")
    assert _gap(grads[mode, 1], grads["torch.func", 1]) < 1e-8
    assert _gap(grads[mode, 1], grads[mode, 0]) < 1e-6
    # the penalty's part is far above that tolerance: leaving it out is seen
    model = tiny_model(VOCAB, seed=1).double()
    model.zero_grad()
    accumulate_gradients(WeightedObjective([Term("lm", NLL()), Term("safety", Safety())]),
                         model, batches, experts=experts)
    assert _gap({n: p.grad for n, p in model.named_parameters()}, grads[mode, 0]) > 1e-3


@pytest.mark.parametrize("method", ["exact", "finite_difference"])
def test_share_every_measures_on_every_nth_step_and_the_first(experts, method):
    model = tiny_model(VOCAB, seed=1).double()
    batches = [make_batch(seed=0)]
    for every, measured in ((3, [1, 3, 6]), (1, [1, 2, 3, 4, 5, 6, 7]), (0, [])):
        penalty = GradientNormPenalty(Safety(), method=method, share_every=every)
        objective = WeightedObjective([Term("lm", NLL()), Term("flat", penalty, LAMBDA)])
        logged = [s for s in range(1, 8)  # global steps of a stage that starts at 1
                  if "flat/share" in accumulate_gradients(objective, model, batches,
                                                          experts=experts, step=s)]
        assert logged == measured, every


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2", None])
def test_share_every_rejects_what_is_not_a_count(bad):
    with pytest.raises(RecipeError, match="share_every must be an integer >= 0") as err:
        GradientNormPenalty(Safety(), share_every=bad)
    assert err.value.key == "share_every"


def test_share_every_is_read_from_the_recipe_with_its_key(registry, tiny_recipe):
    from losscraft.recipe import validate_recipe
    from losscraft.recipe.instantiate import build_recipe

    def with_every(every):
        return tiny_recipe(stage={"terms": [{"plugin": "nll",
                                             "penalty": {"weight": 0.1, "share_every": every}}]})

    built = build_recipe(load_recipe(with_every(4)), registry)
    assert built.stage("main").objective.terms[1].loss.share_every == 4
    for bad in (-2, 2.5, "often"):
        path = with_every(bad)
        with pytest.raises(RecipeError) as err:
            validate_recipe(load_recipe(path), registry)
        assert err.value.key == "stages.main.terms[0].penalty.share_every", bad


def test_watch_keeps_the_largest_share_per_term():
    watch = PenaltyShareWatch()
    for share in (1e-6, 3e-5, 2e-6):
        watch.see({"a/share": share, "b/share": 10 * share, "loss": 1.0})
    assert watch.largest == pytest.approx({"a": 3e-5, "b": 3e-4})
    lines = watch.warnings("main")
    assert len(lines) == 1 and "'a'" in lines[0] and "raise λ" in lines[0]
    assert 3e-4 > MIN_SHARE


def _run(tmp_path, registry, weight, **penalty):
    path = tmp_path / f"w{weight}{penalty}.toml"
    path.write_text(recipe_toml(
        run={"seed": 3, "output_dir": tmp_path / f"run{weight}{penalty}"},
        model={"plugin": "tiny", "seed": 1},
        experts={"clean": {"plugin": "tiny", "seed": 5}, "toxic": {"plugin": "tiny", "seed": 6}},
        stages=[{"name": "main", "max_steps": 2, "batch_size": 4, "lr": 1e-2, "warmup_steps": 0,
                 "max_context_tokens": 48, "max_response_tokens": 16,
                 "data": [{"plugin": "toy_dialogs", "count": 8}],
                 "terms": [{"name": "lm", "plugin": "nll"},
                           {"name": "safety", "plugin": "safety_loss",
                            "penalty": {"weight": weight, "method": "finite_difference",
                                        **penalty}}]}]))
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


def test_the_warning_fires_from_the_steps_that_measure_the_share(tmp_path, registry):
    import json
    text, result = _run(tmp_path, registry, 1e-12, share_every=2, method="exact",
                        exact_mode="layerwise")
    assert "the penalty is not acting: raise λ" in text
    rows = [json.loads(l) for l in result.metrics.read_text().splitlines()]
    assert ["safety_grad_penalty/share" in r for r in rows] == [True, False]
    assert all("safety_grad_penalty" in r for r in rows)  # ‖g‖² on every step
