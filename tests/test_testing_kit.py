"""The `losscraft.testing` contract checks catch the mistakes they promise to catch (each check
must be able to fail), and the fixtures work from a plain conftest."""

from __future__ import annotations

import random

import pytest
import torch

from losscraft import LossOutput, hookimpl
from losscraft.functional import token_nll
from losscraft.plugins.registry import Registry
from losscraft.testing import (ContractError, check_data_source, check_objective,
                               check_scorer, toy_examples)

pytest_plugins = ["losscraft.testing.fixtures"]


class PerMicroBatchNLL:
    """NLL normalised by the micro-batch's tokens (wrong under accumulation)."""

    def __call__(self, ctx):
        mask = ctx.batch.response_mask
        return LossOutput(token_nll(ctx.logits, ctx.batch.targets, mask, normalizer=mask.sum()))


class ZeroGradLoss:
    """A constant-connected value with zero gradient."""

    def __call__(self, ctx):
        return LossOutput(ctx.logits.sum() * 0.0)


class _StepNLL:
    """Correct step-normalised NLL; subclasses log a metric declared the wrong way."""

    def _value(self, ctx):
        mask = ctx.batch.response_mask
        total = ctx.step_sum("kit_tokens", lambda b: b.response_mask.sum())
        return token_nll(ctx.logits, ctx.batch.targets, mask, normalizer=total), mask


class MeanDeclaredSummed(_StepNLL):
    """Logs the micro-batch's mean token NLL but lists it in ``summed``."""

    def __call__(self, ctx):
        value, mask = self._value(ctx)
        mean = token_nll(ctx.logits, ctx.batch.targets, mask).detach()
        return LossOutput(value, {"mean_nll": mean}, summed=frozenset({"mean_nll"}))


class SumDeclaredMean(_StepNLL):
    """Logs the response-token count (a sum over the step) without listing it in ``summed`` —
    the README's old LengthPenalisedNLL."""

    def __call__(self, ctx):
        value, mask = self._value(ctx)
        return LossOutput(value, {"tokens": mask.sum()})


class WellDeclared(_StepNLL):
    """Both kinds of metric, declared right."""

    def __call__(self, ctx):
        value, mask = self._value(ctx)
        mean = token_nll(ctx.logits, ctx.batch.targets, mask).detach()
        return LossOutput(value, {"mean_nll": mean, "tokens": mask.sum()},
                          summed=frozenset({"tokens"}))


class ShuffledSource:
    """Different order on every iteration."""

    def __iter__(self):
        examples = toy_examples(6)
        random.shuffle(examples)
        return iter(examples)


class OverconfidentScorer:
    """Returns 2.0 for every reply."""

    def p_unsafe(self, contexts, responses):
        return [2.0 for _ in responses]


class BatchDependentScorer:
    """Depends on the batch size; silently accepts mismatched lengths."""

    def p_unsafe(self, contexts, responses):
        return [min(1.0, 0.1 * len(responses)) for _ in responses]


class _Bad:
    @hookimpl
    def register_objectives(self, register):
        register("per_micro_batch_nll", PerMicroBatchNLL)
        register("zero_grad", ZeroGradLoss)
        register("mean_declared_summed", MeanDeclaredSummed)
        register("sum_declared_mean", SumDeclaredMean)
        register("well_declared", WellDeclared)

    @hookimpl
    def register_data_sources(self, register):
        register("shuffled", ShuffledSource)

    @hookimpl
    def register_scorers(self, register):
        register("overconfident", OverconfidentScorer)
        register("batch_dependent", BatchDependentScorer)


@pytest.fixture
def bad_registry():
    registry = Registry()
    registry.load_entry_points({"nll", "tiny"})
    registry.add_plugin(_Bad(), "bad")
    return registry


def test_builtin_nll_passes_with_fixtures(bad_registry, tmp_path):
    check_objective("nll", tmp_path=tmp_path, registry=bad_registry)


def test_accumulation_mistake_is_caught(bad_registry):
    with pytest.raises(ContractError, match="step_sum"):
        check_objective("per_micro_batch_nll", registry=bad_registry, resume=False)


@pytest.mark.parametrize("name, fix", [("mean_declared_summed", "remove it from summed"),
                                       ("sum_declared_mean", "add it to summed")])
def test_misdeclared_metric_reduction_is_caught(bad_registry, name, fix):
    with pytest.raises(ContractError, match=fix) as err:
        check_objective(name, registry=bad_registry, penalty=False, resume=False)
    assert "metric '" in str(err.value) and name in str(err.value)


def test_well_declared_metrics_pass(bad_registry):
    check_objective("well_declared", registry=bad_registry, penalty=False, resume=False)


def test_zero_gradient_is_caught(bad_registry):
    with pytest.raises(ContractError, match="every gradient is zero"):
        check_objective("zero_grad", registry=bad_registry, resume=False)


def test_nondeterministic_source_is_caught(bad_registry):
    random.seed(1)
    with pytest.raises(ContractError, match="not re-iterable|not deterministic"):
        check_data_source("shuffled", registry=bad_registry)


def test_scorer_range_and_batch_consistency_are_caught(bad_registry):
    with pytest.raises(ContractError, match="not a probability"):
        check_scorer("overconfident", registry=bad_registry)
    with pytest.raises(ContractError, match="one-by-one"):
        check_scorer("batch_dependent", registry=bad_registry)


def test_fixtures(tiny, make_batch, make_context, write_recipe, testing_registry):
    batch = make_batch(tiny.tokenizer)
    assert batch.num_negatives == 2 and batch.is_safe.isnan().any()
    ctx = make_context(tiny.model, batch)
    assert torch.isfinite(ctx.logits).all()
    path = write_recipe(terms=[{"plugin": "nll", "weight": 0.5}], max_steps=1)
    from losscraft.recipe import load_recipe, validate_recipe

    validate_recipe(load_recipe(path), testing_registry)
