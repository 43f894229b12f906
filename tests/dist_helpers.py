"""Run a function in N processes of a gloo process group (CPU), for the data-parallel tests.

The processes are forked from the test process (no re-import: a 2-process run starts in well
under a second), each with one CPU thread and the launcher environment ``torchrun`` would set
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so the code under
test joins the group through `losscraft.distributed.setup` exactly as under ``torchrun``.
"""

from __future__ import annotations

import os
import socket
import traceback

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "LOSSCRAFT_DIST_TIMEOUT": "60"})
    torch.set_num_threads(1)
    try:
        fn(rank, *args)
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run_ranks(fn, *args, world: int = 2) -> None:
    """``fn(rank, *args)`` in ``world`` forked processes; raises if any of them fails. ``fn``
    must be a module-level function; results come back through files."""
    mp.start_processes(_child, args=(world, free_port(), fn, args), nprocs=world,
                       start_method="fork", join=True)


#: rows of the JSONL file the launcher tests train on (through ``local_files``)
LAUNCH_DATA_ROWS = [{"history": [f"question number {i}?"], "response": f"answer {i}, kindly.",
                     "is_safe": i % 3 != 0} for i in range(8)]


def launch_tiny_run(tmp_path, launcher: list[str]):
    """``launcher + ["-m", "losscraft", "run", RECIPE, "--no-progress"]`` in a fresh interpreter
    (one thread per process), on the tests' tiny recipe for 2 steps over `LAUNCH_DATA_ROWS`,
    writing to ``tmp_path / "out"``; returns the finished `subprocess.CompletedProcess`."""
    import json
    import subprocess

    from conftest import TINY_RECIPE

    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LAUNCH_DATA_ROWS))
    recipe = tmp_path / "r.toml"
    recipe.write_text(TINY_RECIPE.format(out=tmp_path / "out")
                      .replace('plugin = "toy_dialogs"\n  count = 12',
                               f'plugin = "local_files"\n  path = "{data}"')
                      .replace("max_steps = 4", "max_steps = 2"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LOSSCRAFT_DIST_TIMEOUT": "120"}
    return subprocess.run([*launcher, "-m", "losscraft", "run", str(recipe), "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
