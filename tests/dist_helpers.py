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
