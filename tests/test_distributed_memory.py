"""Precision and memory settings for scaling out (issue 11, item 6).

- bf16 autocast (``run.precision = "bf16"``) keeps fp32 master weights and the loss math in fp32.
- Half-precision *trainable* weights are refused with a message that says what to do; a
  half-precision frozen base under a float32 LoRA adapter is fine.
- Activation checkpointing (``run.activation_checkpointing``) gives the same finite-difference
  penalty gradient as without it — bit for bit: the shifted gradient is taken with the
  parameters shifted in place, because checkpointing recomputes forwards from the module's own
  parameters (through ``functional_call`` the gradient was silently taken at θ: 1.1% off) — and
  is refused with the exact penalty, naming the key and the alternative.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_RECIPE
from losscraft import StepContext, Term, WeightedObjective
from losscraft.core import accumulate_gradients
from losscraft.core.penalty import GradientNormPenalty
from losscraft.data.collate import DialogCollator
from losscraft.errors import ModelError, RecipeError
from losscraft.recipe import load_recipe
from losscraft.recipe.schema import LoraSpec
from losscraft.trainer import Trainer
from losscraft.trainer.model_setup import apply_lora, prepare_policy
from losscraft.types import Example
from losscraft_plugins.models.tiny import TinyModel
from losscraft_plugins.objectives.nll import NLLLoss
from losscraft_plugins.objectives.safety_loss import SafetyLoss

EXAMPLES = [Example(history=[t], response=r, is_safe=i % 3 != 0) for i, (t, r) in enumerate(
    [("hi, how are you?", "I'm well, thanks!"), ("help me with homework", "Sure, which one?"),
     ("you are dumb", "You are dumber, idiot."), ("my friend lied", "That hurts; talk calmly."),
     ("what to cook?", "How about pasta?"), ("tell me a secret", "I can't share that.")])]

PENALTY_RECIPE = TINY_RECIPE.replace("max_steps = 4", "max_steps = 2") + """
[experts.clean]
plugin = "tiny"
seed = 5

[experts.toxic]
plugin = "tiny"
seed = 6
"""


def _penalised(tmp_path, name, extra=()):
    path = tmp_path / f"{name}.toml"
    text = PENALTY_RECIPE.format(out=tmp_path / name).replace(
        '  [[stages.terms]]\n  plugin = "nll"\n',
        '  [[stages.terms]]\n  plugin = "nll"\n  [[stages.terms]]\n  name = "safety"\n'
        '  plugin = "safety_loss"\n  [stages.terms.penalty]\n  weight = 0.5\n'
        '  method = "finite_difference"\n')
    path.write_text(text)
    return load_recipe(path, list(extra))


# ----------------------------------------------------------------------------- precision
def test_bf16_autocast_keeps_fp32_weights_and_fp32_loss_math(tmp_path, registry):
    policy = TinyModel(seed=1).load()
    batch = DialogCollator(policy.tokenizer, max_context_tokens=32,
                           max_response_tokens=16)(EXAMPLES)
    ctx = StepContext(policy.model, batch, autocast_dtype=torch.bfloat16)
    assert ctx.logits.dtype == torch.bfloat16  # the matmuls ran in bf16
    value = NLLLoss()(ctx).value
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert all(p.grad.dtype == torch.float32 for p in policy.model.parameters())

    path = tmp_path / "bf16.toml"
    path.write_text(TINY_RECIPE.format(out=tmp_path / "bf16"))
    recipe = load_recipe(path, ['run.precision="bf16"', "stages.main.max_steps=2"])
    result = Trainer(recipe, registry=registry, show_progress=False).run()
    weights = load_file(str(result.final_model / "model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}
    start = TinyModel().load().model.state_dict()
    assert any(not torch.equal(weights[k], start[k]) for k in weights)  # the weights moved


def _stage(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(TINY_RECIPE.format(out=tmp_path / "s"))
    recipe = load_recipe(path)
    return recipe, recipe.stages[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_trainable_weights_are_refused(tmp_path, dtype):
    recipe, stage = _stage(tmp_path)
    model = TinyModel().load(dtype=dtype).model
    with pytest.raises(ModelError, match="fp32 master copy.*run.precision"):
        prepare_policy(model, recipe, stage)
    # a LoRA adapter on the same half-precision base trains in float32: allowed
    lora = apply_lora(model, LoraSpec(r=2, target_modules=["q_proj"]))
    assert {p.dtype for p in lora.parameters() if p.requires_grad} == {torch.float32}
    prepare_policy(lora, recipe, stage)


# ----------------------------------------------------------------------------- checkpointing
@pytest.mark.parametrize("micro_batches", [1, 2])
def test_finite_difference_penalty_is_exact_under_activation_checkpointing(micro_batches):
    grads = []
    for checkpointing in (False, True):
        loaded = TinyModel(seed=1).load(dtype=torch.float64)
        model = loaded.model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={
                "use_reentrant": False})
        experts = {n: TinyModel(seed=s).load(dtype=torch.float64).model.requires_grad_(False)
                   for n, s in (("clean", 2), ("toxic", 3))}
        collate = DialogCollator(loaded.tokenizer, max_context_tokens=32, max_response_tokens=16)
        size = len(EXAMPLES) // micro_batches
        batches = [collate(EXAMPLES[i:i + size]) for i in range(0, len(EXAMPLES), size)]
        objective = WeightedObjective([
            Term("safety", SafetyLoss()),
            Term("flat", GradientNormPenalty(SafetyLoss(), method="finite_difference"), 0.5)])
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        accumulate_gradients(objective, model, batches, experts=experts)
        for n, p in model.named_parameters():  # the in-place shift was undone exactly
            assert torch.equal(p.detach(), before[n]), n
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    plain, checkpointed = grads
    for n in plain:
        # The in-place path takes ∇L(θ') with autograd.grad, the other through the trainer's
        # backward: the same finite difference, summed in another order. Its cancellation
        # (f·∇L(θ') − f·∇L(θ), f = 2‖g‖/r) turns float64 rounding into ~1e-7 of the result;
        # a gradient taken at θ instead of θ' would be off by O(1).
        err = (checkpointed[n] - plain[n]).abs().max() / plain[n].abs().max().clamp_min(1e-30)
        assert err < 1e-6, (n, err.item())


def test_activation_checkpointing_in_a_run_and_refused_with_the_exact_penalty(tmp_path,
                                                                                registry):
    runs = {}
    for flag in ("false", "true"):
        recipe = _penalised(tmp_path, f"ckpt_{flag}", [f"run.activation_checkpointing={flag}"])
        runs[flag] = Trainer(recipe, registry=registry, show_progress=False).run()
    a, b = (load_file(str(runs[f].final_model / "model.safetensors")) for f in ("false", "true"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    recipe = _penalised(tmp_path, "exact", ["run.activation_checkpointing=true",
                                            'stages.main.terms.safety.penalty.method="exact"'])
    with pytest.raises(RecipeError, match=r"run\.activation_checkpointing.*exact gradient "
                                          r"penalty.*finite_difference"):
        Trainer(recipe, registry=registry, show_progress=False).run()
