"""Experts as LoRA adapters on the policy's own base (`losscraft.models.adapters`).

- An `AdapterExpert` gives the logits of the same expert loaded as a separate model (the base
  with that adapter merged), while the policy's own adapter is active and training.
- A FlatGD step (safety loss + gradient-norm penalty, both methods) with adapter experts gives the
  policy gradient of the step with three separate models.
- The trainer: expert stages save their adapter inside their model folder (instead of merged
  weights when nothing loads those), the policy stage attaches them, and the run ends where the
  three-model run ends; recipe mistakes are refused naming the key.

Tolerances (float64 tiny Llama): logits and gradients agree to 1e-10 relative (merged weights vs
base + low-rank product may sum in another order; measured: identical here, while each expert's
logits differ from the base model's by 1.4–1.7 relative). Trained runs (float32, 2 + 2 + 2
steps): 1e-5 absolute on the final weights.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file

from conftest import TINY_STAGE, tiny_toml
from losscraft import StepContext, Term, WeightedObjective
from losscraft.core import accumulate_gradients
from losscraft.core.penalty import GradientNormPenalty
from losscraft.data.collate import DialogCollator
from losscraft.errors import ModelError, RecipeError
from losscraft.models.adapters import AdapterExpert, AdapterSnapshot, attach_adapter_experts
from losscraft.recipe import load_recipe
from losscraft.trainer import Trainer
from losscraft.trainer.model_setup import adapter_experts
from losscraft.types import Example
from losscraft_plugins.models.tiny import TinyModel
from losscraft_plugins.objectives.safety_loss import SafetyLoss

REL = 1e-10
EXAMPLES = [Example(history=[t], response=r, is_safe=i != 2) for i, (t, r) in enumerate(
    [("hi, how are you?", "I'm well, thanks!"), ("help me with homework", "Sure, which one?"),
     ("you are dumb", "You are dumber, idiot."), ("my friend lied", "That hurts; talk calmly.")])]


def _base():
    return TinyModel(seed=1).load(dtype=torch.float64)


def _lora(model, seed):
    """``model`` with a fresh LoRA adapter whose weights are random (not the zero init)."""
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                        task_type="CAUSAL_LM")
    peft = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.3)
    return peft


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """Two expert adapters saved to disk, the separately loaded (merged) expert models, a
    policy factory (base + its own random adapter) and a batch."""
    root = tmp_path_factory.mktemp("adapters")
    folders, full = {}, {}
    for name, seed in (("clean", 11), ("toxic", 12)):
        trained = _lora(_base().model, seed)
        folders[name] = AdapterSnapshot(trained).save(root / name)
        loaded = PeftModel.from_pretrained(_base().model, str(folders[name]))
        full[name] = loaded.merge_and_unload().requires_grad_(False).eval()
    tok = _base().tokenizer
    batch = DialogCollator(tok, max_context_tokens=32, max_response_tokens=16)(EXAMPLES)

    def policy():
        model = _lora(_base().model, 5)
        return model, attach_adapter_experts(model, folders)
    return folders, full, policy, batch


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_adapter_expert_logits_equal_the_separately_loaded_expert(setting):
    _, full, policy, batch = setting
    model, experts = policy()
    model.train()
    for name in ("clean", "toxic"):
        ours = experts[name](**batch.model_inputs(torch.float64), use_cache=False).logits
        theirs = full[name](**batch.model_inputs(torch.float64), use_cache=False).logits
        assert _rel(ours, theirs) < REL, name
        assert not ours.requires_grad
    assert model.training  # the policy's mode is restored
    assert model.active_adapters == ["default"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)  # experts stay frozen
    # and the policy's own forward is untouched by the experts' adapters
    own = model(**batch.model_inputs(torch.float64)).logits
    assert _rel(own, experts["clean"](**batch.model_inputs(torch.float64)).logits) > 1e-3


@pytest.mark.parametrize("method", ["exact", "finite_difference"])
def test_flatgd_step_with_adapters_equals_the_three_model_step(setting, method):
    _, full, policy, batch = setting
    grads = []
    for use_adapters in (True, False):
        model, adapters = policy()
        experts = adapters if use_adapters else full
        objective = WeightedObjective([
            Term("safety", SafetyLoss()),
            Term("flat", GradientNormPenalty(SafetyLoss(), method=method), 0.5)])
        metrics = accumulate_gradients(objective, model, [batch], experts=experts)
        assert metrics["flat/grad_norm"] > 0
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    ours, theirs = grads
    assert ours.keys() == theirs.keys()
    scale = max(g.abs().max().item() for g in theirs.values())
    assert max((ours[n] - theirs[n]).abs().max().item() for n in ours) < REL * scale


def test_attaching_needs_a_lora_policy_and_an_adapter_folder(setting, tmp_path):
    folders, _, policy, _ = setting
    with pytest.raises(ModelError, match=r"add \[lora\]"):
        attach_adapter_experts(_base().model, folders)
    model, _ = policy()
    with pytest.raises(ModelError, match="no LoRA adapter in"):
        attach_adapter_experts(model, {"other": tmp_path})
    with pytest.raises(ModelError, match="not loaded"):
        AdapterExpert(model, "missing")


# ----------------------------------------------------------------------------- the trainer
LORA = {"r": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}


def _recipe_text(out, adapter: bool, lora=LORA) -> str:
    """The tiny recipe's stage (2 steps), two expert stages from the base (their experts kept
    as adapters when ``adapter``) and a policy stage from the base with the safety loss and its
    gradient-norm penalty on those experts."""
    data = [{"plugin": "toy_dialogs", "count": 8}]
    expert = {"init": "base", "max_steps": 2, "batch_size": 2, "lr": 5e-2}
    return tiny_toml(
        out, lora=lora,
        experts={"clean": {"from_stage": "clean_expert", "adapter": adapter},
                 "toxic": {"from_stage": "toxic_expert", "adapter": adapter}},
        stages=[{**TINY_STAGE, "max_steps": 2},
                {"name": "clean_expert", **expert, "data": data,
                 "terms": [{"plugin": "nll", "rows": "safe"}]},
                {"name": "toxic_expert", **expert, "keep_model": False, "data": data,
                 "terms": [{"plugin": "nll", "rows": "unsafe"}]},
                {"name": "policy", "init": "base", "max_steps": 2, "batch_size": 2, "lr": 1e-2,
                 "data": data,
                 "terms": [{"plugin": "nll"},
                           {"name": "safety", "plugin": "safety_loss",
                            "penalty": {"weight": 0.1, "method": "finite_difference"}}]}])


def _write(tmp_path, name, adapter: bool, extra=()):
    path = tmp_path / f"{name}.toml"
    path.write_text(_recipe_text(tmp_path / name, adapter))
    return load_recipe(path, list(extra))


def test_trainer_runs_flatgd_on_adapter_experts_like_three_models(tmp_path, registry):
    runs = {}
    for adapter in (True, False):
        recipe = _write(tmp_path, f"adapter_{adapter}", adapter)
        runs[adapter] = Trainer(recipe, registry=registry, show_progress=False).run()
    ours, theirs = runs[True], runs[False]
    clean = ours.output_dir / "stages/clean_expert/model/adapter"
    assert (clean / "adapter_model.safetensors").is_file()
    # nothing loads the expert stage's weights (the next stage starts from the base): the
    # adapter is saved instead of a merged copy of the model
    assert not (clean.parent / "model.safetensors").exists()
    assert (theirs.output_dir / "stages/clean_expert/model/model.safetensors").is_file()
    assert not (ours.output_dir / "stages/toxic_expert").exists() or \
        not (ours.output_dir / "stages/toxic_expert/model").exists()  # keep_model = false
    a = load_file(str(ours.final_model / "model.safetensors"))
    b = load_file(str(theirs.final_model / "model.safetensors"))
    assert not any("lora" in k for k in a)  # the policy's adapter merged, experts' dropped
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


@pytest.mark.parametrize("change, key", [
    (["experts.clean.adapter=1"], "experts.clean.adapter"),
    (["stages.clean_expert.init=\"previous\""], "stages.clean_expert.init"),
])
def test_adapter_recipe_mistakes_name_the_key(tmp_path, change, key):
    recipe = _write(tmp_path, "bad", True, change)
    with pytest.raises(RecipeError, match=key.replace(".", r"\.")):
        adapter_experts(recipe)


def test_adapter_experts_need_lora_and_a_base_policy_stage(tmp_path, registry):
    no_lora = tmp_path / "nolora.toml"
    no_lora.write_text(_recipe_text(tmp_path / "n", adapter=True, lora=None))
    with pytest.raises(RecipeError, match=r"experts\.clean\.adapter.*\[lora\]"):
        adapter_experts(load_recipe(no_lora))
    recipe = _write(tmp_path, "prev", True, ['stages.policy.init="previous"'])
    with pytest.raises(RecipeError, match=r"stages\.policy\.init"):
        Trainer(recipe, registry=registry, show_progress=False).run()
