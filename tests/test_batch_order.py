"""The micro-batch order: a seeded permutation per epoch, and length-grouped batches that keep
every example once per epoch while cutting padding."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_RECIPE
from losscraft.errors import RecipeError
from losscraft.recipe import load_recipe
from losscraft.trainer import Trainer
from losscraft.trainer.prepare.stage_data import MicroBatchOrder


def _epoch(order: MicroBatchOrder, epoch: int = 0) -> list[list[int]]:
    it = order.iterate(epoch * order.per_epoch)
    return [next(it) for _ in range(order.per_epoch)]


def _padding(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(
        lengths[i] for b in batches for i in b)


@pytest.mark.parametrize("n,batch", [(103, 8), (96, 8), (5, 8)])
def test_grouped_epoch_holds_every_example_once(n, batch):
    lengths = [random.Random(i).randint(5, 300) for i in range(n)]
    order = MicroBatchOrder(n, batch, seed=1, shuffle=True, lengths=lengths, group_by_length=4)
    batches = _epoch(order)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert all(len(b) == batch for b in batches[:-1]) and 0 < len(batches[-1]) <= batch


def test_grouping_cuts_padding_and_keeps_batches_random():
    rng = random.Random(0)
    lengths = [rng.randint(10, 400) for _ in range(800)]
    plain = MicroBatchOrder(800, 8, seed=0, shuffle=True)
    grouped = MicroBatchOrder(800, 8, seed=0, shuffle=True, lengths=lengths, group_by_length=50)
    assert _padding(_epoch(plain), lengths) > 1.4
    assert _padding(_epoch(grouped), lengths) < 1.05
    # the batches are shuffled after sorting: no monotone run of lengths across the epoch
    firsts = [lengths[b[0]] for b in _epoch(grouped)]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    # a new epoch and a new seed give other batches
    assert _epoch(grouped, 0) != _epoch(grouped, 1)
    other = MicroBatchOrder(800, 8, seed=1, shuffle=True, lengths=lengths, group_by_length=50)
    assert _epoch(grouped) != _epoch(other)


def test_grouped_order_is_a_function_of_position():
    lengths = list(range(50))
    a = MicroBatchOrder(50, 4, seed=2, shuffle=True, lengths=lengths, group_by_length=3)
    b = MicroBatchOrder(50, 4, seed=2, shuffle=True, lengths=lengths, group_by_length=3)
    first = a.iterate(0)
    seq = [next(first) for _ in range(30)]
    resumed = b.iterate(17)
    assert [next(resumed) for _ in range(13)] == seq[17:]


def test_grouping_needs_lengths_and_is_off_without_shuffle():
    with pytest.raises(ValueError, match="one length per example"):
        MicroBatchOrder(10, 2, seed=0, shuffle=True, lengths=[1, 2], group_by_length=2)
    order = MicroBatchOrder(6, 2, seed=0, shuffle=False, lengths=[5, 1, 4, 2, 6, 3],
                            group_by_length=2)
    assert _epoch(order) == [[0, 1], [2, 3], [4, 5]]


def test_recipe_key_trains_and_resumes_bit_identically(tmp_path, registry):
    def recipe(name):
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY_RECIPE.format(out=tmp_path / name))
        return load_recipe(path, ["stages.main.group_by_length=2"])

    straight = Trainer(recipe("straight"), registry=registry, show_progress=False).run()
    resumed = recipe("resumed")
    Trainer(resumed, registry=registry, show_progress=False, stop_after=2).run()
    second = Trainer(resumed, registry=registry, show_progress=False).run(resume=True)
    a = load_file(str(straight.final_model / "model.safetensors"))
    b = load_file(str(second.final_model / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(l)["step"] for l in second.metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_negative_group_by_length_is_a_recipe_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(TINY_RECIPE.format(out=tmp_path / "bad"))
    with pytest.raises(RecipeError, match="group_by_length"):
        load_recipe(path, ["stages.main.group_by_length=-1"])
