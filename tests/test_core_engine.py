"""`losscraft.core` knows no engine (`tests/test_architecture.py` checks its imports): everything
that spans processes goes through the `StepEngine` passed in (`SingleProcess` by default; DDP and
FSDP engines in `losscraft.distributed.engines`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losscraft import distributed
from losscraft.core import StepContext, StepMetrics, accumulate_gradients, layerwise_double_backward
from losscraft.core.engine import SINGLE_PROCESS, SingleProcess, StepEngine, merge_metrics
from losscraft.core.loss import LossOutput, prepare_loss
from losscraft.core.penalty import GradientNormPenalty
from losscraft.distributed import engines
from losscraft.functional import token_nll
from losscraft.models.tiny import tiny_model
from test_penalty import VOCAB, MLPLM, make_batch  # the penalty tests' toy LM and batch


# ----------------------------------------------------------------------------- the engines
def test_single_process_engine_is_local():
    engine = SingleProcess()
    assert isinstance(engine, StepEngine) and isinstance(SINGLE_PROCESS, SingleProcess)
    assert engine.data_parallel is False
    assert engine.all_reduce_sum(3) == 3.0 and isinstance(engine.all_reduce_sum(3), float)
    assert engine.all_reduce_sum(torch.tensor(2.5)) == 2.5
    tensors = {"a": torch.ones(2), "b": torch.zeros(3)}
    reduced = engine.all_reduce_tensors(tensors)
    assert reduced == tensors and reduced is not tensors
    assert engine.sharded(nn.Linear(2, 2)) is False
    with pytest.raises(NotImplementedError):
        engine.sharded_gradient_penalty(None, None, key="k")


def test_single_process_metrics_follow_the_one_rank_rule():
    values, counts = {"s": 1.5, "m": 3.0, "z": -0.0}, {"s": 2, "m": 2, "z": 1}
    combined = SINGLE_PROCESS.combine_metrics(values, counts, ["s"])
    assert combined == {"s": 1.5, "m": 1.5, "z": 0.0}
    # what the data-parallel function gives in one process
    assert combined == distributed.combine_metrics(values, counts, {"s"})
    # several processes: a key any of them sums is summed; the others are per-batch means
    assert merge_metrics([({"s": 1.0, "m": 2.0}, {"s": 1, "m": 1}, ["s"]),
                          ({"s": 2.0, "m": 4.0}, {"s": 1, "m": 3}, [])]) == {"s": 3.0, "m": 1.5}


def test_distributed_engines_in_one_process():
    assert not distributed.active()
    assert engines.for_process() is SINGLE_PROCESS
    assert isinstance(engines.for_process(sharded=True), engines.FullySharded)
    for engine in (engines.DataParallel(), engines.FullySharded()):
        assert isinstance(engine, StepEngine)
        assert engine.data_parallel is False  # no process group: the local values
        assert engine.all_reduce_sum(2) == 2.0
        assert engine.combine_metrics({"m": 4.0}, {"m": 2}, []) == {"m": 2.0}
        assert engine.sharded(nn.Linear(2, 2)) is False
    with pytest.raises(NotImplementedError):
        engines.DataParallel().sharded_gradient_penalty(None, None, key="k")


# ----------------------------------------------------------------------------- core asks it
class Doubled(SingleProcess):
    """As if a second process held the same rows: every sum doubles. Records what was asked."""

    def __init__(self, *, data_parallel: bool = False):
        self._data_parallel = data_parallel
        self.asked: list[str] = []

    @property
    def data_parallel(self) -> bool:
        return self._data_parallel

    def all_reduce_sum(self, value):
        self.asked.append("all_reduce_sum")
        return 2 * float(value)

    def all_reduce_tensors(self, tensors):
        self.asked.append("all_reduce_tensors")
        return {n: 2 * t for n, t in tensors.items()}

    def combine_metrics(self, values, counts, summed):
        self.asked.append("combine_metrics")
        return merge_metrics([(values, counts, summed)] * 2)


class NLL:
    """Response-token NLL normalised by the step's response tokens."""

    def __call__(self, ctx):
        tokens = ctx.step_sum("tokens", lambda b: b.response_mask.sum())
        value = token_nll(ctx.logits, ctx.batch.targets, ctx.batch.response_mask,
                          normalizer=tokens)
        return LossOutput(value, {"value": value.detach(), "mean_metric": torch.tensor(1.0)},
                          frozenset({"value"}))


def test_contexts_use_the_engine_they_are_given():
    model, batch = MLPLM(), make_batch()
    plain = StepContext(model, batch)
    assert plain.engine is SINGLE_PROCESS
    engine = Doubled()
    ctx = StepContext(model, batch, engine=engine)
    assert ctx.with_params({}).engine is engine and ctx.for_batch(make_batch()).engine is engine
    assert ctx.step_sum("rows", lambda b: b.input_ids.shape[0]) == 4.0
    assert plain.step_sum("rows", lambda b: b.input_ids.shape[0]) == 2.0
    assert engine.asked == ["all_reduce_sum"]
    assert StepMetrics().engine is SINGLE_PROCESS


def test_accumulate_gradients_normalises_and_logs_through_the_engine():
    batches = [make_batch(seed=1), make_batch(seed=2)]
    model = MLPLM()
    alone = accumulate_gradients(NLL(), model, batches)
    grad = model.embed.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    engine = Doubled()
    doubled = accumulate_gradients(NLL(), model, batches, engine=engine)
    assert engine.asked == ["all_reduce_sum", "combine_metrics"]  # step_sum memoised
    # twice the tokens: half of every micro-batch's share; the summed value over both
    # "processes" is the one process's again, the mean metric unchanged
    assert torch.allclose(model.embed.weight.grad, grad / 2, rtol=1e-6, atol=0)
    assert doubled["value"] == pytest.approx(alone["value"])
    assert doubled["mean_metric"] == alone["mean_metric"] == 1.0


def test_the_penalty_reduces_the_step_gradient_through_the_engine():
    model, batch = MLPLM().double(), make_batch()
    penalty = GradientNormPenalty(NLL(), method="finite_difference")
    alone = penalty(StepContext(model, batch))  # one micro-batch of one process: own gradient
    engine = Doubled(data_parallel=True)
    doubled = penalty(StepContext(model, batch, engine=engine))
    assert engine.asked == ["all_reduce_sum", "all_reduce_tensors"]
    # the norm of the doubled g over a twice larger step: g halves, then doubles
    assert doubled.metrics["grad_norm"].item() == pytest.approx(
        alone.metrics["grad_norm"].item(), rel=1e-9)


class Sharded(SingleProcess):
    def __init__(self):
        self.calls = []

    def sharded(self, model):
        return True

    def sharded_gradient_penalty(self, penalty, ctx, *, key):
        self.calls.append((penalty, ctx, key))
        return LossOutput(torch.zeros(()))


def test_a_sharded_model_gets_the_engines_penalty():
    model, batch, engine = MLPLM(), make_batch(), Sharded()
    term = NLL()
    penalty = GradientNormPenalty(term, method="finite_difference", radius=0.25)
    ctx = StepContext(model, batch, engine=engine)
    penalty(ctx)
    assert engine.calls == [(penalty, ctx, f"grad_norm_penalty:{id(penalty)}")]
    assert (penalty.term, penalty.method, penalty.radius) == (term, "finite_difference", 0.25)
    exact = GradientNormPenalty(term)
    exact.prepare(model, engine)  # nothing to prepare on a sharded model
    assert id(model) not in exact._checked


@pytest.mark.parametrize("engine, wrapped", [(None, True), (SINGLE_PROCESS, True),
                                             (Doubled(data_parallel=True), False)])
def test_prepare_wraps_the_layers_only_for_a_single_process(engine, wrapped):
    model = tiny_model(VOCAB, seed=1)
    prepare_loss(GradientNormPenalty(NLL()), model, engine)
    assert layerwise_double_backward.is_enabled(model) is wrapped


def test_prepare_loss_passes_the_engine_to_hooks_that_take_it():
    seen = []

    class Old:
        def prepare(self, model):
            seen.append(("old", model))

    class New:
        def prepare(self, model, engine=None):
            seen.append(("new", model, engine))

    engine = Doubled()
    prepare_loss(Old(), "m", engine)
    prepare_loss(New(), "m", engine)
    prepare_loss(New(), "m")
    assert seen == [("old", "m"), ("new", "m", engine), ("new", "m", None)]
