"""The trainer with ``run.sharding = "fsdp"`` (2 gloo processes, tiny float32 Llama, AdamW at lr
1e-2, 3 steps of 2 micro-batches): the same final weights as one process on the same global
batches — with NLL, and with NLL plus its finite-difference gradient-norm penalty — rank 0 alone
writes (a full, unsharded model folder; one metrics line per step), checkpoints resume bit for
bit, and the exact penalty is refused naming the alternative.

Tolerance on the weights: 1e-5 absolute for NLL, as for DDP (tests/test_distributed_trainer.py;
the shards pad to their own lengths, so float32 sums run in another order) — measured 2.6e-7.
With the finite-difference penalty 5e-5: ``(∇L(θ + r·ĝ) − ∇L(θ))·‖g‖/r`` amplifies float32
round-off by ``‖g‖/r``; measured 9.9e-6 for FSDP and 5.7e-6 for DDP against one process on the
same recipe (the float64 step test, tests/test_fsdp.py, agrees to 2.7e-16 relative).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dist_helpers import run_ranks
from losscraft import distributed
from losscraft.distributed import sharding
from losscraft.errors import LosscraftError, RecipeError
from losscraft.trainer import Trainer
from losscraft_plugins.models.tiny import TinyModel
from test_distributed_trainer import ATOL, _recipe, _records, _weights

#: See the module docstring.
FD_ATOL = 5e-5
PENALTY = {"nll": [],
           "nll_fd_penalty": ["stages.main.terms.0.penalty.weight=0.5",
                              "stages.main.terms.0.penalty.method=finite_difference",
                              # the forward difference, absolute radius (the central one
                              # and eps are compared with one process in test_fsdp.py)
                              "stages.main.terms.0.penalty.difference=forward",
                              "stages.main.terms.0.penalty.eps=0"]}
#: FSDP with activation checkpointing (the finite-difference penalty shifts the shards in place,
#: so recomputed forwards see the shifted weights) against one process without it.
CHECKPOINTED = ["run.activation_checkpointing=true"]


def _train(rank: int, tmp: str, name: str, extra: list, stop_after, resume: bool, registry):
    recipe = _recipe(Path(tmp), name, ["run.sharding=fsdp", *extra])
    trainer = Trainer(recipe, registry=registry, show_progress=False, stop_after=stop_after)
    assert trainer.parallel.world_size == 2 and trainer.parallel.rank == rank
    trainer.run(resume=resume)


def _ddp(rank: int, tmp: str, name: str, extra: list, stop_after: int, registry):
    recipe = _recipe(Path(tmp), name, extra)
    Trainer(recipe, registry=registry, show_progress=False,
            stop_after=stop_after).run()


@pytest.mark.parametrize("objective", [*PENALTY, "nll_fd_penalty_checkpointed"])
def test_fsdp_trains_like_one_process_and_rank_0_writes_full_weights(objective, tmp_path,
                                                                      registry):
    terms = PENALTY[objective.removesuffix("_checkpointed")]
    one = Trainer(_recipe(tmp_path, "one", terms), registry=registry,
                  show_progress=False).run()
    extra = [*terms, *(CHECKPOINTED if objective.endswith("_checkpointed") else [])]
    run_ranks(_train, str(tmp_path), "fsdp", extra, None, False, registry)
    a, b = _weights(one.final_model), _weights(tmp_path / "fsdp" / "final")
    assert a.keys() == b.keys()
    for key in a:  # full tensors, not one rank's shard
        assert a[key].shape == b[key].shape, key
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"{objective}: max |fsdp - single| = {worst:.3g}")
    assert worst <= (ATOL if objective == "nll" else FD_ATOL)
    records = _records(tmp_path / "fsdp")
    assert [r["step"] for r in records] == [1, 2, 3]
    for mine, theirs in zip(records, _records(one.output_dir)):
        assert mine["tokens"] == theirs["tokens"]
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
        assert mine["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-4)


def test_fsdp_checkpoints_resume_bit_for_bit(tmp_path, registry):
    extra = ["stages.main.checkpoint_every=1"]
    run_ranks(_train, str(tmp_path), "straight", extra, None, False, registry)
    run_ranks(_train, str(tmp_path), "resumed", extra, 1, False, registry)
    saved = tmp_path / "resumed/checkpoints/step-000001"
    assert json.loads((saved / "state.json").read_text())["world_size"] == 2
    weights = load_file(str(saved / "trainable.safetensors"))  # full tensors, not one shard
    model = TinyModel(seed=0).load().model
    assert {n: t.shape for n, t in weights.items()} == \
        {n: p.shape for n, p in model.named_parameters()}
    run_ranks(_train, str(tmp_path), "resumed", extra, None, True, registry)
    straight = _weights(tmp_path / "straight/final")
    resumed = _weights(tmp_path / "resumed/final")
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
    assert [r["step"] for r in _records(tmp_path / "resumed")] == [1, 2, 3]

    # checkpoints hold full weights and optimizer state (keyed by name), so an FSDP checkpoint
    # resumes in one unsharded process, and a DDP one under FSDP: the same global batches
    run_ranks(_train, str(tmp_path), "to_one", extra, 2, False, registry)
    recipe = _recipe(tmp_path, "to_one", extra)  # run.sharding back to "none"
    Trainer(recipe, registry=registry, show_progress=False).run(resume=True)
    run_ranks(_ddp, str(tmp_path), "from_ddp", extra, 1, registry)
    run_ranks(_train, str(tmp_path), "from_ddp", extra, None, True, registry)
    for name in ("to_one", "from_ddp"):
        switched = _weights(tmp_path / name / "final")
        worst = max((straight[k] - switched[k]).abs().max().item() for k in straight)
        assert worst <= ATOL, (name, worst)
        assert [r["step"] for r in _records(tmp_path / name)] == [1, 2, 3]


def _exact(rank: int, tmp: str, registry):
    recipe = _recipe(Path(tmp), "exact", ["stages.main.terms.0.penalty.weight=0.5",
                                          "stages.main.terms.0.penalty.method=exact",
                                          "run.sharding=fsdp"])
    with pytest.raises(LosscraftError, match='penalty.method = "finite_difference"') as raised:
        Trainer(recipe, registry=registry, show_progress=False).run()
    assert isinstance(raised.value, RecipeError)
    assert raised.value.key == "stages.main.terms[0].penalty.method"


def test_exact_penalty_under_fsdp_is_refused_by_the_trainer(tmp_path, registry):
    run_ranks(_exact, str(tmp_path), registry)


def test_sharding_values_are_checked(tmp_path):
    with pytest.raises(RecipeError, match="run.sharding"):
        _recipe(tmp_path, "bad", ["run.sharding=zero3"])


def test_fsdp_in_one_process_says_how_to_launch(tmp_path, registry):
    recipe = _recipe(tmp_path, "single", ["run.sharding=fsdp"])
    assert not distributed.active()
    with pytest.raises(LosscraftError, match="several processes.*torchrun"):
        Trainer(recipe, registry=registry, show_progress=False).run()



def test_accelerate_use_fsdp_asks_for_sharding(monkeypatch):
    assert not sharding.requested("none")
    assert sharding.requested("fsdp")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sharding.requested("none")


@pytest.mark.launcher
def test_accelerate_launch_use_fsdp(tmp_path):
    """``accelerate launch --use_fsdp`` (about 20 s: two fresh interpreters) shards the policy
    without any recipe change."""
    from dist_helpers import free_port, launch_tiny_run

    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--use_fsdp",
               "--fsdp_version", "2", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port())]
    done = launch_tiny_run(tmp_path, command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "FSDP, the policy sharded over 2 processes" in done.stdout + done.stderr
    assert [r["step"] for r in _records(tmp_path / "out")] == [1, 2]
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()
