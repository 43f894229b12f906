"""Conformance: every registered objective and data source passes the same checks.

Objectives (iterated from the plugin registry, so a new plugin is covered by installing it): a
finite value and finite gradients on a packed batch with negatives and safe, unsafe and unlabelled
rows; two optimizer steps through the `Trainer` on the tiny model (declared experts are tiny models
with other seeds, sharing the tiny tokenizer); stopping after one step and resuming gives the same
weights as two straight steps. Data sources: each yields well-formed `Example`s from its embedded
default. Parameters a plugin needs (or that exercise more of it) go in the tables below.
"""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from losscraft.core.context import StepContext
from losscraft.core.loss import loss_experts, loss_requires
from losscraft.data.collate import DialogCollator
from losscraft.plugins import get_registry
from losscraft.recipe import load_recipe
from losscraft.trainer import Trainer
from losscraft.types import Example

#: objective name -> recipe parameters (required ones, or ones that exercise more of the term)
OBJECTIVE_PARAMS: dict[str, dict] = {
    "cringe": {"negatives": True},
    "unlikelihood": {"negatives": True},
    "socially_aware_npair": {"margin": 0.5, "use_negative_weights": True},
}

#: data source name -> function(tmp_path) -> parameters it needs
SOURCE_PARAMS = {
    "local_files": lambda tmp: {"path": str(_write_jsonl(tmp / "dialogs.jsonl"))},
}

#: built-ins that must be registered (catches a plugin whose entry point stopped loading)
BUILTIN_OBJECTIVES = {"nll", "socially_aware_npair", "embedding_npair", "safety_loss",
                      "unlikelihood", "cringe"}

_REGISTRY = get_registry()
OBJECTIVES = _REGISTRY.names("objective")
DATA_SOURCES = sorted(set(_REGISTRY.names("data_source")) | {"toy_dialogs"})


def _write_jsonl(path):
    rows = [{"history": ["hello there", "how are you?"], "response": "fine, thanks",
             "is_safe": True, "id": "a"},
            {"history": ["tell me a secret"], "response": "no", "is_safe": False, "id": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _toml_value(value) -> str:
    return json.dumps(value)  # str/int/float/bool/list of those are the same in TOML


def _experts_of(registry, name: str) -> tuple[str, ...]:
    return loss_experts(registry.create("objective", name, dict(OBJECTIVE_PARAMS.get(name, {}))))


def test_registry_loaded_every_builtin(registry):
    assert not registry.failures, [(p.name, p.error) for p in registry.failures]
    assert BUILTIN_OBJECTIVES <= set(OBJECTIVES)
    assert set(OBJECTIVE_PARAMS) <= set(OBJECTIVES), "parameter table names unknown objectives"
    assert set(SOURCE_PARAMS) <= set(DATA_SOURCES)


# ----------------------------------------------------------------------------- one packed batch
def _packed_batch(tokenizer):
    examples = [
        Example(["hi, how are you?"], "good, and you?", is_safe=True,
                negatives=["go away.", "whatever, loser."], negative_weights=[1.0, 1.5], id="s"),
        Example(["can you help me?", "with my homework"], "just copy it from a friend.",
                is_safe=False, negatives=["sure, what subject?"], id="u"),
        Example(["what should i cook?"], "how about pasta?", id="n"),
    ]
    collator = DialogCollator(tokenizer, max_context_tokens=48, max_response_tokens=12,
                              pack_negatives=True, max_negatives=2)
    return collator(examples)


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_is_finite_with_finite_gradients(name, registry):
    loss = registry.create("objective", name, dict(OBJECTIVE_PARAMS.get(name, {})))
    policy = registry.create("model", "tiny", {"seed": 0}).load()
    experts = {}
    for i, expert in enumerate(loss_experts(loss)):
        experts[expert] = registry.create("model", "tiny", {"seed": 1 + i}).load().model
        experts[expert].requires_grad_(False)
    batch = _packed_batch(policy.tokenizer)
    assert batch.num_negatives == 2 and batch.is_safe.isnan().sum() == 1
    ctx = StepContext(policy.model, batch, experts=experts, tokenizer=policy.tokenizer,
                      need_hidden_states="hidden_states" in loss_requires(loss),
                      generator=torch.Generator().manual_seed(0))
    out = loss(ctx)
    assert out.value.dim() == 0 and torch.isfinite(out.value), out.value
    for key, value in out.metrics.items():
        assert math.isfinite(float(value)), (key, value)
    out.value.backward()
    grads = [p.grad for p in policy.model.parameters() if p.grad is not None]
    assert grads, "the value is not connected to the policy's parameters"
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    for model in experts.values():
        assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- through the Trainer
def _recipe(tmp_path, name: str, tag: str, experts: tuple[str, ...]):
    params = "".join(f"  {k} = {_toml_value(v)}\n"
                     for k, v in OBJECTIVE_PARAMS.get(name, {}).items())
    expert_tables = "".join(f'[experts.{e}]\nplugin = "tiny"\nseed = {i + 1}\n\n'
                            for i, e in enumerate(experts))
    text = f"""
[run]
seed = 7
output_dir = "{tmp_path / tag}"
device = "cpu"

[model]
plugin = "tiny"

{expert_tables}
[[stages]]
name = "main"
max_steps = 2
batch_size = 2
grad_accum = 2
lr = 1e-2
max_context_tokens = 48
max_response_tokens = 12
max_negatives = 2

  [[stages.data]]
  plugin = "toy_dialogs"
  count = 8
  with_negatives = true

  [[stages.terms]]
  plugin = "{name}"
{params}
[report]
enabled = false
"""
    path = tmp_path / f"{tag}.toml"
    path.write_text(text)
    return load_recipe(path)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("name", OBJECTIVES)
def test_objective_trains_and_resumes_exactly(name, tmp_path, registry):
    experts = _experts_of(registry, name)
    straight = Trainer(_recipe(tmp_path, name, "straight", experts), registry=registry,
                       show_progress=False).run()
    records = [json.loads(line) for line in straight.metrics.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert name in record and math.isfinite(record[name]) and math.isfinite(record["loss"])
        assert math.isfinite(record["grad_norm"])
    base = registry.create("model", "tiny", {"seed": 0}).load().model.state_dict()
    final = _weights(straight.final_model)
    assert any(not torch.equal(final[k], base[k]) for k in final), "two steps changed nothing"

    recipe = _recipe(tmp_path, name, "resumed", experts)
    first = Trainer(recipe, registry=registry, show_progress=False, stop_after=1).run()
    assert first.stopped_early
    second = Trainer(recipe, registry=registry, show_progress=False).run(resume=True)
    resumed = _weights(second.final_model)
    assert resumed.keys() == final.keys()
    for key in final:
        assert torch.equal(final[key], resumed[key]), key


# ----------------------------------------------------------------------------- data sources
@pytest.mark.parametrize("name", DATA_SOURCES)
def test_data_source_yields_examples_from_its_default(name, tmp_path, registry):
    params = SOURCE_PARAMS[name](tmp_path) if name in SOURCE_PARAMS else {}
    source = registry.create("data_source", name, params)
    examples = list(itertools.islice(iter(source), 20))
    assert examples, f"data source '{name}' yielded nothing from its default"
    again = list(itertools.islice(iter(source), 20))
    assert [e.id for e in again] == [e.id for e in examples], "not re-iterable"
    for ex in examples:
        assert isinstance(ex, Example)
        assert isinstance(ex.history, list) and all(isinstance(t, str) for t in ex.history)
        assert isinstance(ex.response, str) and ex.response.strip()
        assert ex.is_safe in (True, False, None)
        assert all(isinstance(n, str) for n in ex.negatives)
        assert ex.negative_weights is None or len(ex.negative_weights) == len(ex.negatives)
        assert all(isinstance(r, str) for r in ex.rots)
        assert isinstance(ex.id, str)
