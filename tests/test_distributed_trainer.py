"""The trainer under data parallelism (2 gloo processes on CPU, tiny model): same weights as one
process on the same global batches, rank 0 alone writes, resume with the same and with another
number of processes, mining-style stage preparation once; and the real launchers
(``torchrun -m losscraft``).

Tolerance for weights after training (float32 tiny Llama, AdamW at lr 1e-2): 1e-5 absolute;
measured 2.6e-7 after 3 steps (the shards pad to their own lengths, so float sums run in another
order). Two-process runs against each other, including a resumed one, are bit-identical.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_RECIPE
from dist_helpers import run_ranks
from losscraft import distributed
from losscraft.errors import LosscraftError, RecipeError
from losscraft.recipe import load_recipe
from losscraft.trainer import Trainer

ATOL = 1e-5


def _recipe(tmp_path: Path, name: str, extra=(), count: int = 16):
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY_RECIPE.format(out=tmp_path / name)
                    .replace("count = 12", f"count = {count}")
                    .replace("batch_size = 2", "batch_size = 4"))
    return load_recipe(path, ["stages.main.max_steps=3", *extra])


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _train(rank: int, tmp: str, name: str, extra: list, stop_after, resume: bool, registry):
    recipe = _recipe(Path(tmp), name, extra)
    trainer = Trainer(recipe, registry=registry, show_progress=True, stop_after=stop_after)
    assert trainer.parallel.world_size == 2 and trainer.parallel.rank == rank
    assert trainer.show_progress == (rank == 0)
    trainer.run(resume=resume)


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_train_like_one_and_only_rank_0_writes(tmp_path, registry):
    one = Trainer(_recipe(tmp_path, "one"), registry=registry, show_progress=False).run()
    run_ranks(_train, str(tmp_path), "two", [], None, False, registry)
    two = tmp_path / "two"
    a, b = _weights(one.final_model), _weights(two / "final")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= ATOL
    records = _records(two)
    assert [r["step"] for r in records] == [1, 2, 3]  # one line per step, not one per rank
    for mine, theirs in zip(records, _records(one.output_dir)):
        assert mine["tokens"] == theirs["tokens"]  # counted over both ranks
        assert mine["nll/tokens"] == theirs["nll/tokens"]
        assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-5)
    history = (two / "recipe_history.jsonl").read_text().splitlines()
    assert len(history) == 1
    assert json.loads((two / "run.json").read_text())["final_model"] == str(two / "final")


def test_resume_with_the_same_and_another_number_of_processes(tmp_path, registry, capsys):
    extra = ["stages.main.checkpoint_every=1"]
    run_ranks(_train, str(tmp_path), "straight", extra, None, False, registry)
    run_ranks(_train, str(tmp_path), "resumed", extra, 1, False, registry)
    state = json.loads((tmp_path / "resumed/checkpoints/step-000001/state.json").read_text())
    assert state["world_size"] == 2
    run_ranks(_train, str(tmp_path), "resumed", extra, None, True, registry)
    straight = _weights(tmp_path / "straight/final")
    resumed = _weights(tmp_path / "resumed/final")
    for key in straight:  # same processes, same RNG streams per rank: bit for bit
        assert torch.equal(straight[key], resumed[key]), key
    assert [r["step"] for r in _records(tmp_path / "resumed")] == [1, 2, 3]

    # a 2-process checkpoint resumed by one process: the same global batches, with a note
    run_ranks(_train, str(tmp_path), "switched", extra, 2, False, registry)
    capsys.readouterr()
    recipe = _recipe(tmp_path, "switched", extra)
    Trainer(recipe, registry=registry, show_progress=False).run(resume=True)
    assert "written by 2 process(es), this run has 1" in capsys.readouterr().err
    switched = _weights(tmp_path / "switched/final")
    assert max((straight[k] - switched[k]).abs().max().item() for k in straight) <= ATOL


def _prepare_once(rank: int, tmp: str, registry):
    from losscraft.trainer import loop

    original = loop.Trainer._augment

    def counting(self, stage, examples, model):
        with open(Path(tmp) / f"augment.{rank}", "a") as f:
            f.write("called\n")
        return [*original(self, stage, examples, model)][:12]  # rank 0's result reaches all

    loop.Trainer._augment = counting
    recipe = _recipe(Path(tmp), "prepared", ["stages.main.max_steps=1"])
    Trainer(recipe, registry=registry, show_progress=False).run()


def test_stage_preparation_runs_once_on_rank_0(tmp_path, registry):
    run_ranks(_prepare_once, str(tmp_path), registry)
    assert (tmp_path / "augment.0").read_text() == "called\n"
    assert not (tmp_path / "augment.1").exists()


def _too_few_rows(rank: int, tmp: str, registry):
    recipe = _recipe(Path(tmp), "few", count=5)
    with pytest.raises(LosscraftError, match=r"stages\.main\.batch_size.*only 1 rows") as raised:
        Trainer(recipe, registry=registry, show_progress=False).run()
    assert isinstance(raised.value, RecipeError if rank == 0 else distributed.RankZeroError)


def test_a_micro_batch_too_small_to_share_is_refused(tmp_path, registry):
    run_ranks(_too_few_rows, str(tmp_path), registry)


# ----------------------------------------------------------------------------- launchers
@pytest.mark.launcher
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_launchers_start_python_dash_m_losscraft(tmp_path, launcher):
    """The real launchers, as a user runs them (about 20 s each: two fresh interpreters)."""
    from dist_helpers import free_port, launch_tiny_run

    command = {
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                     "--nproc-per-node", "2"],
        "accelerate": [str(Path(sys.executable).with_name("accelerate")), "launch",
                       "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                       "--mixed_precision", "no", "--dynamo_backend", "no",
                       "--main_process_port", str(free_port())],
    }[launcher]
    done = launch_tiny_run(tmp_path, command)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("final model") == 1  # rank 0 alone prints the table
    assert [r["step"] for r in _records(tmp_path / "out")] == [1, 2]
    assert (tmp_path / "out" / "final" / "model.safetensors").is_file()


def _adapter_run(rank: int, tmp: str, registry):
    from test_adapters import _write

    Trainer(_write(Path(tmp), "two", True), registry=registry, show_progress=False).run()


def test_experts_as_adapters_under_data_parallelism(tmp_path, registry):
    """Expert stages saving adapters, the FlatGD stage (finite-difference penalty) reading them:
    2 processes end where one does."""
    from test_adapters import _write

    one = Trainer(_write(tmp_path, "one", True), registry=registry, show_progress=False).run()
    run_ranks(_adapter_run, str(tmp_path), registry)
    a, b = _weights(one.final_model), _weights(tmp_path / "two" / "final")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= ATOL
    assert (tmp_path / "two/stages/clean_expert/model/adapter/adapter_config.json").is_file()
