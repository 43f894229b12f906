"""Loading the policy and experts for a stage, and wrapping the policy in a LoRA adapter."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from losscraft.components import LoadedModel
from losscraft.errors import ModelError
from losscraft.plugins import Registry
from losscraft.recipe.schema import LoraSpec, Recipe
from losscraft.recipe.validate import build_component

log = logging.getLogger(__name__)


def load_base(recipe: Recipe, registry: Registry, device: str) -> LoadedModel:
    provider = build_component("model", recipe.model, recipe.path, registry)
    return provider.load(device=device)


def load_saved(path: Path, device: str) -> LoadedModel:
    """A model folder written by an earlier stage (``save_pretrained`` + tokenizer)."""
    from losscraft.models.loading import load_causal_lm

    model, tokenizer = load_causal_lm(str(path), device=device)
    return LoadedModel(model, tokenizer, str(path))


def apply_lora(model: torch.nn.Module, spec: LoraSpec | None) -> torch.nn.Module:
    """Wrap ``model`` in a fresh peft LoRA adapter (only the adapter trains)."""
    if spec is None or not spec.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [m for m in spec.target_modules if m not in names]
    if missing:
        raise ModelError(f"[lora] target_modules {missing} are not modules of this model "
                         f"(e.g. {sorted(names)[:12]})")
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=list(spec.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold a LoRA adapter into the base weights (no-op for a plain model)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def load_expert(name: str, recipe: Recipe, registry: Registry, device: str,
                policy_tokenizer, output_dir: Path) -> torch.nn.Module:
    """Load expert ``name`` frozen, after checking its vocabulary matches the policy's."""
    from losscraft.models.loading import check_same_vocab, freeze

    stage = recipe.expert_from_stage.get(name)
    if stage is not None:
        folder = output_dir / "stages" / stage / "model"
        if not folder.is_dir():
            raise ModelError(f"expert '{name}' comes from stage '{stage}', whose model folder "
                             f"{folder} does not exist")
        loaded = load_saved(folder, device)
        dtype = recipe.experts[name].params.get("dtype")
        if dtype:
            loaded.model.to(getattr(torch, {"bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)))
    else:
        provider = build_component("model", recipe.experts[name], recipe.path, registry)
        loaded = provider.load(device=device)
    check_same_vocab(policy_tokenizer, loaded.tokenizer, name)
    log.info("expert %s loaded from %s", name, loaded.source or stage)
    return freeze(loaded.model)
