"""Loading the policy and experts for a stage, and wrapping the policy in a LoRA adapter.

Experts declared with ``adapter = true`` (``[experts.clean] from_stage = "clean_expert"``,
``adapter = true``) are LoRA adapters on the policy's own frozen base (see
`losscraft.models.adapters`): their stage saves its adapter in its model folder (instead of the
merged weights when nothing loads those, `adapter_only_stages`), and a stage that reads them
loads them onto its LoRA policy instead of loading full models. `prepare_policy` checks the
policy's trainable precision and switches activation checkpointing on."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from losscraft.plugins.protocols import LoadedModel
from losscraft.errors import ModelError, RecipeError
from losscraft.models.adapters import ADAPTER_DIR, init_lora_b
from losscraft.plugins.registry import Registry
from losscraft.recipe.schema import LoraSpec, Recipe, StageSpec
from losscraft.recipe.instantiate import build_component

log = logging.getLogger(__name__)


def load_saved(path: Path, device: str) -> LoadedModel:
    """A model folder written by a run (a stage's model, ``final/``): ``save_pretrained`` +
    tokenizer, verified against the manifest it must carry (safetensors only, no code)."""
    from losscraft.models.loading import load_causal_lm

    model, tokenizer = load_causal_lm(str(path), device=device, require_manifest=True)
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
    model = get_peft_model(model, config)
    if spec.init_b_std:
        init_lora_b(model, spec.init_b_std)
    return model


def prepare_policy(model: torch.nn.Module, recipe: Recipe, stage: StageSpec) -> None:
    """Check the policy's trainable weights can learn, and switch activation checkpointing on
    when ``run.activation_checkpointing`` asks for it.

    - Trainable parameters must be float32 (or float64): the optimizer updates them in place, and
      without an fp32 master copy bf16/fp16 weights lose small updates (a bf16 weight near 1
      moves in steps of 2⁻⁷ ≈ 0.008, so lr 5e-6 leaves it unchanged). Half-precision *frozen*
      weights are fine — e.g. a bf16 base under a LoRA adapter, which peft keeps in float32.
    - Activation checkpointing works with every objective and with the finite-difference
      penalty; the exact penalty differentiates twice, which checkpointed recomputation does
      not support here, so that combination is refused (its default ``exact_mode =
      "layerwise"`` is the exact penalty's own way to save memory).
    """
    half = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()
                   if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16)})
    if half:
        raise ModelError(
            f"stage '{stage.name}': the trainable weights are {', '.join(half)}; training them "
            "without an fp32 master copy loses updates (at lr 5e-6 a bf16 weight does not "
            "move). Load the policy in float32 (the model's dtype parameter) and set "
            "run.precision = \"bf16\" for bf16 autocast, or train a [lora] adapter (kept in "
            "float32) on a half-precision base")
    if not recipe.run.activation_checkpointing:
        return
    exact = [t for t in stage.terms
             if t.penalty is not None and t.penalty.weight and t.penalty.method == "exact"]
    if exact:
        raise RecipeError(
            "activation checkpointing cannot be combined with the exact gradient penalty of term "
            f"'{exact[0].name or exact[0].plugin}': it differentiates twice, which the "
            "recomputed forwards do not support (its default exact_mode = \"layerwise\" already "
            "holds one layer's second-order graph at a time). Use method = \"finite_difference\" "
            f"({exact[0].key}.penalty.method) or set run.activation_checkpointing = false",
            file=recipe.path, key="run.activation_checkpointing")
    non_reentrant = {"use_reentrant": False}  # frozen inputs (LoRA) need no input grads
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 names it so
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=non_reentrant)
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=non_reentrant)
    else:
        raise ModelError(f"stage '{stage.name}': this model has no activation checkpointing "
                         "(set run.activation_checkpointing = false)")


def merge_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Fold a LoRA adapter into the base weights (no-op for a plain model)."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def adapter_experts(recipe: Recipe) -> dict[str, str]:
    """The experts declared with ``adapter = true``, by name, each with the stage that trains it.
    Raises `RecipeError` (naming the key) unless each comes from a stage (``from_stage``) that
    trains a LoRA adapter (``[lora]``) from the base model (the first stage or
    ``init = "base"``), so the adapter fits the policy's base."""
    found: dict[str, str] = {}
    for name, spec in recipe.experts.items():
        flag = spec.params.get("adapter", False)
        key = f"experts.{name}.adapter"
        if not isinstance(flag, bool):
            raise RecipeError(f"expected true or false, got {flag!r}", file=recipe.path, key=key)
        if not flag:
            continue
        stage = recipe.expert_from_stage.get(name)
        if stage is None:
            raise RecipeError("an expert adapter is trained by a stage of this recipe: set "
                              "from_stage = \"<stage>\" (or drop adapter = true to load a full "
                              "model)", file=recipe.path, key=key)
        if recipe.lora is None or not recipe.lora.enabled:
            raise RecipeError("experts as adapters need the policy and the expert stages to "
                              "train LoRA adapters on one frozen base: add a [lora] table",
                              file=recipe.path, key=key)
        index = [s.name for s in recipe.stages].index(stage)
        if index > 0 and recipe.stages[index].init != "base":
            raise RecipeError(f"stage '{stage}' trains expert adapter '{name}', so it must start "
                              "from the base model the policy's adapter sits on: set init = "
                              "\"base\"", file=recipe.path, key=f"stages.{stage}.init")
        found[name] = stage
    return found


def check_adapter_policy_stage(recipe: Recipe, index: int, names: list[str]) -> None:
    """A stage that reads expert adapters ``names`` must start from the base model (its own
    adapter and the experts' share that base); `RecipeError` naming ``stages.<name>.init``."""
    stage = recipe.stages[index]
    if names and index > 0 and stage.init != "base":
        raise RecipeError(f"stage '{stage.name}' reads expert adapter(s) {', '.join(names)}, "
                          "which sit on the base model: set init = \"base\" (or load the "
                          "experts as full models: adapter = false)", file=recipe.path,
                          key=f"{stage.key}.init")


def adapter_only_stages(recipe: Recipe) -> set[str]:
    """Stages that save only their LoRA adapter, not a merged model: they train an expert
    adapter, no full-model expert is read from them, and nothing loads their weights — they
    are not the last stage (whose model becomes ``final/``) and the next stage starts from the
    base model. Saves a full copy of the weights on disk per expert."""
    adapters = adapter_experts(recipe)
    full = {stage for name, stage in recipe.expert_from_stage.items() if name not in adapters}
    names = [s.name for s in recipe.stages]
    only = set()
    for stage in set(adapters.values()) - full:
        index = names.index(stage)
        if index + 1 < len(names) and recipe.stages[index + 1].init == "base":
            only.add(stage)
    return only


def adapter_folder(output_dir: Path, stage: str) -> Path:
    """Where stage ``stage`` keeps its LoRA adapter: inside its model folder, so the adapter is
    verified by the same manifest (checked here, when the folder exists) and removed with the
    model (``keep_model = false``)."""
    from losscraft.models.loading import check_model_folder

    model_folder = Path(output_dir) / "stages" / stage / "model"
    if model_folder.is_dir():
        check_model_folder(model_folder, param=f"stage '{stage}' adapter",
                           require_manifest=True, weights=False)
        adapter = model_folder / ADAPTER_DIR
        if (adapter / "adapter_config.json").is_file() and \
                not (adapter / "adapter_model.safetensors").is_file():
            raise ModelError(f"stage '{stage}': {adapter} has no adapter_model.safetensors "
                             "(losscraft loads adapters from safetensors only)")
    return model_folder / ADAPTER_DIR


def load_expert(name: str, recipe: Recipe, registry: Registry, device: str,
                policy_tokenizer, output_dir: Path, *, provider=None) -> torch.nn.Module:
    """Load expert ``name`` frozen, after checking its vocabulary matches the policy's.
    ``provider``: the expert's model provider, already built (`losscraft.recipe.instantiate`)."""
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
        if provider is None:
            provider = build_component("model", recipe.experts[name], recipe.path, registry)
        loaded = provider.load(device=device)
    check_same_vocab(policy_tokenizer, loaded.tokenizer, name)
    log.info("expert %s loaded from %s", name, loaded.source or stage)
    return freeze(loaded.model)
