"""Experts as LoRA adapters on the policy's own frozen base: one base model in memory, not three.

FlatGD's safety loss reads a clean and a toxic expert. As full models they cost two extra copies
of the weights; as LoRA adapters trained from the same base model as the policy they cost two
small adapters on the policy's `peft.PeftModel`. The policy trains its own adapter
(``"default"``); an `AdapterExpert` runs the same model with one of the expert adapters instead,
through peft's per-call adapter selection (``adapter_names=`` on the forward, which needs the
model in eval mode: switched for the call and back), under ``no_grad``. Nothing about the
policy's adapter — which adapter is active, which parameters require grad — changes.

The adapter itself is stored beside the merged model of the stage that trained it
(``stages/<stage>/model/adapter/``: ``adapter_config.json`` + ``adapter_model.safetensors``,
peft's format), see `AdapterSnapshot`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from losscraft.errors import ModelError

#: Sub-folder of a stage's model folder that holds its LoRA adapter.
ADAPTER_DIR = "adapter"
POLICY_ADAPTER = "default"


def is_peft_model(model: nn.Module) -> bool:
    """Whether ``model`` is a `peft.PeftModel` (a LoRA-wrapped policy)."""
    return hasattr(model, "peft_config") and hasattr(model, "load_adapter")


class AdapterSnapshot:
    """The trained adapter of a `PeftModel`, copied before the adapter is merged away, written
    later into the stage's model folder (`save`) in peft's own format."""

    def __init__(self, model: nn.Module, adapter: str = POLICY_ADAPTER):
        from peft import get_peft_model_state_dict

        if not is_peft_model(model):
            raise ModelError("saving an expert adapter needs a LoRA policy: add [lora] to the "
                             "recipe")
        self.config = model.peft_config[adapter]
        self.weights = {k: v.detach().cpu().clone().contiguous() for k, v in
                        get_peft_model_state_dict(model, adapter_name=adapter).items()}

    def save(self, folder: Path) -> Path:
        """``folder/adapter_config.json`` and ``folder/adapter_model.safetensors``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(str(folder))
        save_file(self.weights, str(folder / "adapter_model.safetensors"),
                  metadata={"format": "pt"})
        return folder


class AdapterExpert:
    """A frozen expert that is adapter ``name`` of the policy's `PeftModel` ``model``.

    Called like a Hugging Face causal LM (``expert(input_ids=..., attention_mask=...)``), it runs
    ``model`` with only adapter ``name`` active, without gradient, in eval mode, and restores the
    model's train/eval mode afterwards. ``parameters()`` and ``get_output_embeddings()`` are the
    shared model's, so `losscraft.core.context.StepContext` treats it like any other expert."""

    training = False

    def __init__(self, model: nn.Module, name: str):
        if not is_peft_model(model) or name not in model.peft_config:
            raise ModelError(f"expert adapter '{name}' is not loaded on the policy")
        self.model = model
        self.name = name

    def __call__(self, **inputs):
        rows = inputs["input_ids"].shape[0]
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return self.model(**inputs, adapter_names=[self.name] * rows)
        finally:
            self.model.train(was_training)

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def get_output_embeddings(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def __repr__(self) -> str:
        return f"AdapterExpert({self.name!r})"


def attach_adapter_experts(model: nn.Module,
                           folders: Mapping[str, Path]) -> dict[str, AdapterExpert]:
    """Load each adapter folder onto the policy ``model`` (frozen, not active) and return the
    experts by name. The policy's own adapter stays active and trainable."""
    if not folders:
        return {}
    if not is_peft_model(model):
        raise ModelError("experts as adapters need a LoRA policy on the same base: add [lora] to "
                         "the recipe")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    experts = {}
    for name, folder in folders.items():
        folder = Path(folder)
        if not (folder / "adapter_config.json").is_file():
            raise ModelError(f"expert '{name}': no LoRA adapter in {folder} (was its stage run "
                             "with [lora]?)")
        if name in model.peft_config:
            raise ModelError(f"expert '{name}': an adapter of that name is already loaded")
        model.load_adapter(str(folder), adapter_name=name, is_trainable=False)
        experts[name] = AdapterExpert(model, name)
    still = {n for n, p in model.named_parameters() if p.requires_grad}
    if still != trainable:  # loading must not change what the optimizer trains
        raise ModelError("loading expert adapters changed the policy's trainable parameters")
    return experts


def init_lora_b(model: nn.Module, std: float, adapter: str = POLICY_ADAPTER) -> int:
    """Draw every LoRA ``B`` of ``adapter`` from ``N(0, std²)`` (torch's global RNG, which the
    trainer seeds) instead of peft's zeros; returns how many matrices were set.

    Why (recipes/flatgd.toml has the numbers): with ``B = 0`` the gradient of every loss w.r.t.
    ``A`` is exactly 0 at the first step — except a gradient-norm penalty's, whose ``2·H·g``
    has an ``A`` part through the cross term ``∂²L/∂A∂B``. Adam divides by the root of its own
    second moment, so that lone, tiny gradient becomes a step of full size ``lr`` on ``A``: the
    penalty then moves the weights although it is a millionth of the objective. With ``B ≠ 0``
    every adapter weight has the objective's gradient from the first step, and the penalty moves
    them by its actual share. The merged weights start ``s·B·A`` away from the base (``s =
    alpha/r``), a small, measured change; the same for every model a comparison trains."""
    count = 0
    with torch.no_grad():
        for name, module in model.named_modules():
            if name.endswith(f"lora_B.{adapter}") and hasattr(module, "weight"):
                module.weight.normal_(0.0, std)
                count += 1
    if count == 0:
        raise ModelError(f"no LoRA B matrices of adapter '{adapter}' to initialise")
    return count


def detach_adapter_experts(model: nn.Module, names: list[str]) -> None:
    """Delete the expert adapters ``names`` from the policy (before merging its own adapter)."""
    for name in names:
        if is_peft_model(model) and name in model.peft_config:
            model.delete_adapter(name)

