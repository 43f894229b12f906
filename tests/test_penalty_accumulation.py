"""The gradient-norm penalty over a whole optimizer step, and step metrics under accumulation.

- M micro-batches give the same penalty value (``‖∇θ Σ_m L_m‖²``) and parameter gradient as one
  batch of the same rows, for both methods — not ``Σ_m ‖∇θ L_m‖²``.
- Dropout: every pass of a micro-batch sees the same masks, so the finite difference still
  approaches the exact penalty, also across the first pass of a multi-micro-batch step.
- The trainer's logged metrics (partial sums such as ``safety/js_clean``, NLL/UL/CRINGE parts,
  the penalty) are the same for ``grad_accum = 1`` and ``4`` on the same rows.

Measured (float64 tiny Llama, 8 rows = one batch vs 4 micro-batches of 2): max |Δ| of the
parameter gradient relative to its largest entry 1.7e-16 (exact), 3.1e-16 (finite difference);
the step's ‖g‖² agrees to the last bit. The exact penalty's default ``layerwise`` mode agrees with
those to 1e-6 instead (``EXACT``: the tiny Llama computes attention and RMSNorm in float32, and
that mode rounds a layer's first- and second-order cotangents through them separately; see
tests/test_penalty.py); ``exact/autograd`` (plain double backward) keeps the strict checks. Finite difference vs exact over 2 micro-batches: 8.0e-3,
8.0e-4, 7.9e-5 at r = 1e-2, 1e-3, 1e-4. With attention dropout 0.3: exact vs double backward
with the same masks 6e-18, finite difference (r = 1e-4) 9.2e-4 — and 97 (!) without the replay of
the masks.
"""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from transformers import LlamaForCausalLM

from losscraft import StepContext, Term, WeightedObjective
from losscraft.core import accumulate_gradients
from losscraft.core.penalty import GradientNormPenalty
from losscraft.data.collate import DialogCollator
from losscraft.models.tiny import tiny_model
from losscraft.recipe import load_recipe
from losscraft.testing.builders import recipe_toml
from losscraft.trainer import Trainer
from losscraft.types import Example
from losscraft_plugins.models.tiny import TinyModel
from losscraft_plugins.objectives.safety_loss import SafetyLoss

METHODS = ["exact", "exact/autograd", "finite_difference"]
#: Agreement of the exact penalty with double backward / across batchings, by mode (see above).
EXACT = {"exact": 1e-6, "exact/autograd": 1e-10}

TURNS = ["hi, how are you?", "can you help me with my homework?", "you are dumb",
         "i want to skip school tomorrow", "my friend lied to me", "what should i cook?",
         "tell me a secret", "I hate my neighbour"]
REPLIES = ["I'm well, thanks!", "Sure, which subject?", "You are dumber, idiot.",
           "Maybe talk to someone about why.", "That hurts. Talk to them calmly.",
           "How about pasta?", "I can't share that.", "Then burn his house down."]
EXAMPLES = [Example(history=[t], response=r, is_safe=i not in (2, 7))
            for i, (t, r) in enumerate(zip(TURNS, REPLIES))]


@pytest.fixture(scope="module")
def tiny():
    """(policy loader, tokenizer, experts): tiny Llamas built from config by the `tiny` model
    plugin, in float64."""
    def load(seed):
        return TinyModel(seed=seed).load(dtype=torch.float64)

    experts = {}
    for name, seed in (("clean", 2), ("toxic", 3)):
        experts[name] = load(seed).model.requires_grad_(False).eval()
    return load, load(1).tokenizer, experts


def collate(tokenizer, examples):
    return DialogCollator(tokenizer, max_context_tokens=32, max_response_tokens=16)(examples)


def penalty(term, method, radius=1e-2):
    """``method`` is a penalty method, or ``exact/<exact_mode>``."""
    method, _, mode = method.partition("/")
    return GradientNormPenalty(term, method=method, radius=radius,
                               exact_mode=mode or "layerwise")


def penalty_objective(method, radius=1e-2):
    return WeightedObjective([
        Term("safety", SafetyLoss(chunk_size=5)),
        Term("flat", penalty(SafetyLoss(chunk_size=5), method, radius), weight=0.5)])


def step(model, objective, batches, experts):
    model.zero_grad(set_to_none=True)
    metrics = accumulate_gradients(objective, model, batches, experts=experts)
    return metrics, [p.grad.clone() for p in model.parameters()]


def rel_diff(got, ref):
    scale = max(r.abs().max().item() for r in ref)
    return max((a - b).abs().max().item() for a, b in zip(got, ref)) / scale


def test_step_gradient_is_the_sum_over_micro_batches(tiny):
    """The reference: ‖∇ Σ_m L_m‖² by double backward on one batch; the old per-micro-batch
    ``Σ_m ‖∇L_m‖²`` differs from it by far more than any tolerance below."""
    load, tok, experts = tiny
    model = load(1).model
    params = [p for p in model.parameters() if p.requires_grad]
    whole = collate(tok, EXAMPLES)
    parts = [collate(tok, EXAMPLES[i:i + 2]) for i in range(0, 8, 2)]
    value = SafetyLoss()(StepContext(model, whole, experts=experts)).value
    g = torch.autograd.grad(value, params)
    per_micro = 0.0
    for part in parts:
        v = SafetyLoss()(StepContext(model, part, step_batches=parts, experts=experts)).value
        per_micro += sum((x * x).sum() for x in torch.autograd.grad(v, params)).item()
    global_sq = sum((x * x).sum() for x in g).item()
    assert abs(per_micro - global_sq) > 0.1 * global_sq


@pytest.mark.parametrize("method", METHODS)
def test_micro_batches_equal_one_batch(method, tiny):
    load, tok, experts = tiny
    model = load(1).model
    whole = [collate(tok, EXAMPLES)]
    parts = [collate(tok, EXAMPLES[i:i + 2]) for i in range(0, 8, 2)]
    one, grad_one = step(model, penalty_objective(method), whole, experts)
    many, grad_many = step(model, penalty_objective(method), parts, experts)

    # the penalty is ‖g‖² of the step, and the logs say so
    assert one["flat/grad_norm"] > 0
    for key in ("flat", "flat/penalty"):
        assert many[key] == pytest.approx(one["flat/grad_norm"] ** 2, rel=1e-10), key
        assert one[key] == pytest.approx(one["flat/grad_norm"] ** 2, rel=1e-10), key
    for key in ("flat/grad_norm", "flat/term", "safety", "safety/js_clean", "safety/js_toxic",
                "loss"):
        assert many[key] == pytest.approx(one[key], rel=1e-10), key
    # and the parameter gradient (safety + 0.5 · 2Hg) is that of one batch
    assert rel_diff(grad_many, grad_one) < EXACT.get(method, 1e-11)


@pytest.mark.parametrize("method", ["exact", "exact/autograd"])
def test_exact_on_one_batch_is_double_backward(method, tiny):
    load, tok, experts = tiny
    model = load(1).model
    params = [p for p in model.parameters() if p.requires_grad]
    batch = collate(tok, EXAMPLES)
    value = SafetyLoss()(StepContext(model, batch, experts=experts)).value
    grads = torch.autograd.grad(value, params, create_graph=True)
    ref = torch.autograd.grad(sum((g * g).sum() for g in grads), params)
    objective = WeightedObjective([Term("flat", penalty(SafetyLoss(), method))])
    parts = [collate(tok, EXAMPLES[i:i + 2]) for i in range(0, 8, 2)]
    _, got = step(model, objective, parts, experts)
    assert rel_diff(got, ref) < (EXACT[method] if method == "exact" else 1e-11)


def test_finite_difference_over_micro_batches_approaches_exact(tiny):
    load, tok, experts = tiny
    model = load(1).model
    parts = [collate(tok, EXAMPLES[i:i + 4]) for i in (0, 4)]
    _, exact = step(model, penalty_objective("exact"), parts, experts)
    _, fd = step(model, penalty_objective("finite_difference", radius=1e-4), parts, experts)
    assert rel_diff(fd, exact) < 3e-3


# ---------------------------------------------------------------------------------- dropout
def dropout_model(tokenizer, p=0.3):
    """The tiny Llama rebuilt from its config with attention dropout ``p``, in train mode."""
    base = tiny_model(len(tokenizer), seed=1)
    config = base.config
    config.attention_dropout = p
    model = LlamaForCausalLM(config)
    model.load_state_dict(base.state_dict())
    return model.double().train()


def test_dropout_is_active_in_the_test_model(tiny):
    _, tok, _ = tiny
    model, batch = dropout_model(tok), collate(tok, EXAMPLES[:2])
    a = StepContext(model, batch).logits
    b = StepContext(model, batch).logits
    assert (a - b).abs().max() > 1e-3


def reference_with_masks(model, batch, experts, seed):
    """∇‖∇L‖² by double backward, the dropout masks drawn from ``seed``."""
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(seed)
    value = SafetyLoss()(StepContext(model, batch, experts=experts)).value
    grads = torch.autograd.grad(value, params, create_graph=True)
    return torch.autograd.grad(sum((g * g).sum() for g in grads), params)


def penalty_grads(model, batches, experts, method, seed, radius=1e-4):
    torch.manual_seed(seed)
    objective = WeightedObjective([Term("flat", penalty(SafetyLoss(), method, radius))])
    return step(model, objective, batches, experts)


@pytest.mark.parametrize("method", METHODS)
def test_dropout_same_masks_in_every_pass(method, tiny, monkeypatch):
    _, tok, experts = tiny
    model, batch = dropout_model(tok), collate(tok, EXAMPLES[:4])
    ref = reference_with_masks(model, batch, experts, seed=7)
    metrics, got = penalty_grads(model, [batch], experts, method, seed=7)
    err = rel_diff(got, ref)
    assert err < EXACT.get(method, 3e-3), err
    assert metrics["flat"] == pytest.approx(metrics["flat/grad_norm"] ** 2, rel=1e-12)
    if method == "finite_difference":  # without the replay the masks differ: garbage
        monkeypatch.setattr(StepContext, "_same_randomness", lambda self: nullcontext())
        _, unreplayed = penalty_grads(model, [batch], experts, method, seed=7)
        assert rel_diff(unreplayed, ref) > 100 * err


def test_dropout_masks_are_shared_with_the_first_pass(tiny):
    """Two micro-batches: the first pass (Σ_m ∇L_m) and each micro-batch's second pass replay
    the same masks, so ‖g‖² adds up exactly and the finite difference approaches the exact
    Hessian-vector product of the same (masked) function."""
    _, tok, experts = tiny
    model = dropout_model(tok)
    parts = [collate(tok, EXAMPLES[:2]), collate(tok, EXAMPLES[2:4])]
    m_exact, exact = penalty_grads(model, parts, experts, "exact", seed=11)
    m_fd, fd = penalty_grads(model, parts, experts, "finite_difference", seed=11)
    for m in (m_exact, m_fd):
        assert m["flat"] == pytest.approx(m["flat/grad_norm"] ** 2, rel=1e-10)
    assert m_fd["flat"] == pytest.approx(m_exact["flat"], rel=1e-10)
    assert rel_diff(fd, exact) < 3e-3  # r = 1e-4: ≤ 30·r as without dropout


def test_global_rng_is_advanced_as_without_replays(tiny):
    """Replays restore the global RNG: only first forwards of micro-batches draw from it."""
    _, tok, experts = tiny
    model, batch = dropout_model(tok), collate(tok, EXAMPLES[:2])
    torch.manual_seed(3)
    StepContext(model, batch).logits
    expected = torch.rand(3)
    torch.manual_seed(3)
    ctx = StepContext(model, batch)
    ctx.logits
    again = ctx.with_params({n: p.detach() for n, p in model.named_parameters()}).logits
    assert torch.equal(again, ctx.logits)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------------- trainer logs
def _recipe_text(out, method, batch_size, grad_accum):
    """Two steps of NLL + safety loss (with the gradient-norm penalty by ``method``) +
    unlikelihood + CRINGE on 16 toy dialogs, tiny policy and experts."""
    return recipe_toml(
        run={"seed": 3, "output_dir": out}, model={"plugin": "tiny", "seed": 1},
        experts={"clean": {"plugin": "tiny", "seed": 5}, "toxic": {"plugin": "tiny", "seed": 6}},
        stages=[{"name": "main", "max_steps": 2, "batch_size": batch_size,
                 "grad_accum": grad_accum, "lr": 1e-2, "warmup_steps": 0,
                 "max_context_tokens": 48, "max_response_tokens": 16,
                 "data": [{"plugin": "toy_dialogs", "count": 16}],
                 "terms": [{"name": "lm", "plugin": "nll"},
                           {"name": "safety", "plugin": "safety_loss", "log_base": 2.0,
                            "penalty": {"weight": 0.5, "method": method}},
                           {"name": "ul", "plugin": "unlikelihood", "weight": 0.3},
                           {"name": "cringe", "plugin": "cringe", "weight": 0.2}]}])


TIMING = {"tokens_per_s", "step_seconds"}


def _run(tmp_path, registry, method, batch_size, grad_accum):
    name = f"{method}-{grad_accum}"
    path = tmp_path / f"{name}.toml"
    path.write_text(_recipe_text(tmp_path / name, method, batch_size, grad_accum))
    result = Trainer(load_recipe(path), registry=registry, show_progress=False).run()
    return [json.loads(line) for line in result.metrics.read_text().splitlines()]


@pytest.mark.parametrize("method", ["exact", "finite_difference"])
def test_logged_metrics_do_not_depend_on_grad_accum(method, tmp_path, registry):
    one = _run(tmp_path, registry, method, batch_size=8, grad_accum=1)
    four = _run(tmp_path, registry, method, batch_size=2, grad_accum=4)
    assert len(one) == len(four) == 2
    for a, b in zip(one, four):
        assert set(a) == set(b)
        for key in ("safety/js_clean", "safety/js_toxic", "ul/nll", "ul/ul", "cringe/nll",
                    "cringe/cringe", "lm/tokens", "lm/ppl", "safety_grad_penalty/penalty"):
            assert key in a, key
        for key in sorted(set(a) - TIMING):
            if isinstance(a[key], str):
                assert a[key] == b[key], key
            else:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key  # float32: ≤ 8e-7
        assert a["safety_grad_penalty/penalty"] == pytest.approx(
            a["safety_grad_penalty/grad_norm"] ** 2, rel=1e-5)
