"""LoRA adapters for the cross-encoder classifier (``classifier.lora_r > 0``), through peft.

An adapter is what makes a fine-tuned judge small enough to ship: the rank-r updates of the
encoder's linear layers plus the classification head, a few megabytes, applied to the encoder the
recipe names (`apply_adapter`) and merged into plain weights for the scorers (`merged_classifier`).
"""

from __future__ import annotations

from pathlib import Path

from losscraft.recipe.schema import ClassifierSpec

#: what the saved adapter config says its base is (the real path is machine-specific)
BASE_NAME = "classifier.encoder"


def add_lora(model, spec: ClassifierSpec):
    """``model`` wrapped by peft with a fresh LoRA adapter; the classification head (and the
    pooler feeding it) train in full."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=spec.lora_r, lora_alpha=spec.lora_alpha,
                        lora_dropout=spec.lora_dropout,
                        target_modules=list(spec.lora_target_modules),
                        modules_to_save=["classifier", "pooler"])
    return get_peft_model(model, config)


def save_adapter(model, folder: Path) -> None:
    """Save the adapter of a peft-wrapped classifier (no base weights) into ``folder``."""
    model.peft_config["default"].base_model_name_or_path = BASE_NAME
    model.save_pretrained(folder)


def merged_classifier(spec: ClassifierSpec, folder: Path):
    """``(tokenizer, model)``: the recipe's encoder with the adapter in ``folder`` merged in."""
    from peft import PeftModel

    from losscraft.judge.encoder import load_encoder_classifier

    tokenizer, base = load_encoder_classifier(spec)
    return tokenizer, PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
