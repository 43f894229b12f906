"""Multi-process (data-parallel) training on ``torch.distributed``: the process group, which rank
does what, and the few reductions the loss math needs.

A run launched by ``torchrun --nproc-per-node N -m losscraft run RECIPE`` (or ``accelerate
launch``, which starts the same processes through ``torch.distributed.run``) finds ``RANK`` /
``WORLD_SIZE`` / ``LOCAL_RANK`` in its environment; `setup` joins the process group (NCCL on
CUDA, gloo on CPU) and every other function here is a no-op in a single process. The design:

- **The recipe does not change.** ``batch_size`` stays the *global* micro-batch: each rank takes
  a deterministic shard of it (`shard`: rows ``rank, rank + N, ...``), so the run sees the same
  rows per optimizer step as one process would, with the same learning rate.
- **Losses are normalised over the global batch.** ``StepContext.step_sum`` all-reduces its
  counts, so each rank's loss is its share of the global loss and the global gradient is the
  *sum* of the ranks' gradients: `wrap_model` puts the policy in ``DistributedDataParallel``
  with a comm hook that sums instead of averaging.
- **Step-level values** (the gradient penalty's ``g = Σ ∇L``) are all-reduced with
  `all_reduce_tensors`; logged metrics are combined over ranks with `combine_metrics`.
- **Core asks, this package answers.** `losscraft.core` imports nothing from here: the trainer
  passes each step a step engine (`losscraft.distributed.engines`) that calls these reductions.
- **Rank 0 alone writes** logs, checkpoints, models and summaries and draws progress;
  `run_on_main` runs a step once on rank 0 (mining, RoT retrieval, folder preparation) and hands
  its result — or its error — to every rank.
- **FSDP, not DeepSpeed.** ``run.sharding = "fsdp"`` or ``accelerate launch --use_fsdp`` shards
  the policy with torch's ``fully_shard`` (`losscraft.distributed.sharding`); ``--use_deepspeed``
  is refused with what to use instead (`refuse_sharded_engines`).
"""

from __future__ import annotations

import atexit
import datetime
import inspect
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from losscraft.core.engine import merge_metrics
from losscraft.errors import LosscraftError, RecipeError

T = TypeVar("T")

#: Seconds a collective may wait for the other ranks before the run fails (env override).
TIMEOUT_ENV = "LOSSCRAFT_DIST_TIMEOUT"


@dataclass(frozen=True)
class Parallel:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its
    node. ``world_size == 1`` is a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise LosscraftError(f"environment variable {name}={raw!r} is not an integer") from None


def launched() -> Parallel:
    """What the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) says."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise LosscraftError(f"inconsistent launcher environment: RANK={rank}, "
                             f"WORLD_SIZE={world}")
    return Parallel(rank, world, local)


def active() -> bool:
    """A process group with more than one member is initialised."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def current() -> Parallel:
    """This process's place in the initialised group (rank 0 of 1 when there is none)."""
    if not active():
        return Parallel()
    return Parallel(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                    _env_int("LOCAL_RANK", torch.distributed.get_rank()))


def is_main() -> bool:
    """Whether this process is rank 0 (always true in a single process)."""
    return current().is_main


def setup(device: str) -> tuple[Parallel, str]:
    """Join the process group the launcher prepared (no-op for a single process) and return
    ``(place, device)``: CUDA devices become ``cuda:<LOCAL_RANK>``. The backend is NCCL on CUDA,
    gloo otherwise; the group is destroyed when the process exits."""
    place = launched()
    refuse_sharded_engines()
    if not place.enabled:
        return place, device
    if not torch.distributed.is_available():
        raise LosscraftError("this torch build has no torch.distributed; cannot run "
                             f"{place.world_size} processes")
    if device.startswith("cuda"):
        if ":" not in device:
            device = f"cuda:{place.local_rank}"
        torch.cuda.set_device(torch.device(device))
    elif device not in ("cpu",):
        raise LosscraftError(f"multi-process training runs on cuda or cpu, not on '{device}' "
                             "(set run.device)")
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        timeout = datetime.timedelta(seconds=_env_int(TIMEOUT_ENV, 1800))
        torch.distributed.init_process_group(backend=backend, timeout=timeout,
                                             device_id=torch.device(device)
                                             if backend == "nccl" else None)
        atexit.register(_destroy)
    return current(), device


#: Environment flags `accelerate launch` sets for engines that shard the model.
#: (``--use_fsdp``, ``ACCELERATE_USE_FSDP``, is served by `losscraft.distributed.sharding`.)
SHARDED_ENGINES = {"ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}


def refuse_sharded_engines() -> None:
    """`LosscraftError` when the launcher asks for DeepSpeed (``accelerate launch
    --use_deepspeed``): losscraft trains data-parallel with DistributedDataParallel or shards
    with torch's FSDP (``--use_fsdp`` / ``run.sharding = "fsdp"``), and the gradient-norm
    penalty needs gradient passes DeepSpeed's engine does not expose. Saying so beats a run
    that silently ignores the flag."""
    for variable, engine in SHARDED_ENGINES.items():
        if os.environ.get(variable, "").lower() in ("1", "true", "yes"):
            raise LosscraftError(
                f"{engine} was requested ({variable}), but losscraft trains with "
                "DistributedDataParallel or torch's FSDP only: launch without --use_deepspeed "
                "(e.g. accelerate launch --multi_gpu --num_processes N -m losscraft run RECIPE). "
                "To fit a larger model per GPU use --use_fsdp (or run.sharding = \"fsdp\", with "
                "the finite-difference penalty), a [lora] adapter, experts as adapters "
                "([experts.NAME] adapter = true), run.activation_checkpointing = true (with the "
                "finite-difference penalty) and run.precision = \"bf16\"")


def _destroy() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait until every rank arrives (no-op in a single process)."""
    if active():
        torch.distributed.barrier()


# ----------------------------------------------------------------------------- data
def shard(indices: list[int]) -> list[int]:
    """This rank's rows of a global micro-batch: ``indices[rank::world_size]``. Deterministic,
    and the ranks' shards together are exactly ``indices``."""
    place = current()
    return list(indices[place.rank::place.world_size])


def check_shardable(num_examples: int, batch_size: int, *, key: str,
                    file: str | None = None) -> None:
    """`RecipeError` (at ``key``, a stage's ``batch_size``; `RankZeroError` with the same
    message on the other ranks) when some micro-batch of the stage would leave a rank without
    rows: every rank must run every forward and backward."""
    world = current().world_size
    if world == 1:
        return
    last = num_examples % batch_size or batch_size
    smallest = min(batch_size, num_examples, last)
    if smallest < world:
        error = RecipeError(
            f"{world} processes share each micro-batch, but some micro-batch of this stage has "
            f"only {smallest} rows ({num_examples} examples in batches of {batch_size}): use a "
            f"batch_size of at least {world} that leaves a last batch of at least {world} rows "
            "(or a data limit), or fewer processes", file=file, key=key)
        raise error if is_main() else RankZeroError(str(error))  # every rank stops, 0 reports


# ----------------------------------------------------------------------------- reductions
def all_reduce_sum(value: float | torch.Tensor) -> float:
    """``Σ`` of a scalar over ranks (the value itself in a single process)."""
    if not active():
        return float(value)
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=_comm_device())
    torch.distributed.all_reduce(tensor)
    return float(tensor.item())


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on at least one rank."""
    return all_reduce_sum(1.0 if flag else 0.0) > 0


def all_reduce_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The elementwise ``Σ`` over ranks of every tensor of ``tensors`` (same names and shapes on
    every rank), in one collective; returns new tensors (the inputs unchanged). In a single
    process returns the inputs."""
    if not active() or not tensors:
        return dict(tensors)
    names = list(tensors)
    dtype = tensors[names[0]].dtype
    flat = torch.cat([tensors[n].detach().reshape(-1).to(dtype) for n in names])
    device = flat.device
    flat = flat.to(_comm_device())
    torch.distributed.all_reduce(flat)
    flat = flat.to(device)
    out, offset = {}, 0
    for n in names:
        size = tensors[n].numel()
        out[n] = flat[offset:offset + size].view_as(tensors[n]).to(tensors[n].dtype)
        offset += size
    return out


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (plain Python data), in rank order; ``[obj]`` in a single process."""
    if not active():
        return [obj]
    result: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(result, obj)
    return result


def gather_rows(tensor: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every rank's ``tensor`` concatenated along dim 0 (ranks may hold different numbers of
    rows, and other dims are zero-padded to the largest), and where this rank's rows start.
    This rank's slice *is* ``tensor`` (padded), so gradient flows into it; the other ranks'
    rows are constants here — as in pytorch-metric-learning's distributed wrapper. In a single
    process: ``(tensor, 0)``."""
    if not active():
        return tensor, 0
    shapes = gather_objects(tuple(tensor.shape))
    rank = torch.distributed.get_rank()
    widest = [max(s[d] for s in shapes) for d in range(1, tensor.dim())]
    rows = max(s[0] for s in shapes)
    pad: list[int] = []
    for d in reversed(range(1, tensor.dim())):
        pad += [0, widest[d - 1] - tensor.shape[d]]
    local = torch.nn.functional.pad(tensor, pad) if any(pad) else tensor
    sendable = local.detach()
    if sendable.dtype == torch.bool:
        sendable = sendable.to(torch.uint8)
    full = torch.nn.functional.pad(sendable, [0, 0] * (tensor.dim() - 1)
                                   + [0, rows - tensor.shape[0]])
    device = full.device
    parts = [torch.empty_like(full, device=_comm_device()) for _ in shapes]
    torch.distributed.all_gather(parts, full.to(_comm_device()).contiguous())
    pieces = [part.to(device)[:s[0]].to(tensor.dtype) for part, s in zip(parts, shapes)]
    pieces[rank] = local
    offset = sum(s[0] for s in shapes[:rank])
    return torch.cat(pieces), offset


def combine_metrics(values: dict[str, float], counts: dict[str, int],
                    summed: Iterable[str]) -> dict[str, float]:
    """A step's metrics over every rank: keys in ``summed`` (partial sums, e.g. a term's value
    normalised by the global batch) are added up; the rest are averaged over every micro-batch
    of every rank that reported them. In a single process: the same rule on this rank alone."""
    return merge_metrics(gather_objects((values, counts, sorted(set(summed)))))


class RankZeroError(LosscraftError):
    """Rank 0's error, raised on the other ranks by `run_on_main` so that every rank stops; rank
    0 reports it, so the command line prints it once (``reported_elsewhere``)."""

    reported_elsewhere = True


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank (sent as a Python object;
    the other ranks wait). An error raised on rank 0 is raised on every other rank too (as
    `RankZeroError`, same message), so all stop. In a single process: ``fn()``."""
    if not active():
        return fn()
    box: list[Any] = [None]
    if is_main():
        try:
            box[0] = ("ok", fn())
        except BaseException as exc:
            message = str(exc) if isinstance(exc, LosscraftError) else \
                f"rank 0 failed: {type(exc).__name__}: {exc}"
            box[0] = ("error", message)
            torch.distributed.broadcast_object_list(box, src=0)
            raise
    torch.distributed.broadcast_object_list(box, src=0)
    status, payload = box[0]
    if status == "error":
        raise RankZeroError(payload)  # rank 0 raised (and reports) its own error above
    return payload


def _comm_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ----------------------------------------------------------------------------- the model
def _sum_hook(process_group, bucket):
    """DDP comm hook: the gradient buckets' *sum* over ranks (DDP's default averages). Each
    rank's loss is already normalised by the global batch, so the sum is the global gradient."""
    work = torch.distributed.all_reduce(bucket.buffer(), group=process_group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap_model(model: nn.Module, device: str) -> nn.Module | None:
    """``model`` in ``DistributedDataParallel`` (gradients summed over ranks), or ``None`` in a
    single process. Call the wrapper for the training forward; keep using ``model`` for
    parameters, saving and ``functional_call``. Buffers are not re-broadcast every forward (the
    ranks' models start identical: DDP broadcasts rank 0's weights once, here)."""
    if not active():
        return None
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    # no buffer broadcast before every forward (torch >= 2.13 names it forward_sync_buffers)
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                      inspect.signature(DistributedDataParallel).parameters
                      else {"broadcast_buffers": False})
    wrapped = DistributedDataParallel(model, device_ids=ids, **no_buffer_sync)
    wrapped.register_comm_hook(None, _sum_hook)
    return wrapped


def resume_note(saved_world_size: int) -> str:
    """What changes when a run written by ``saved_world_size`` processes resumes with another
    number: the weights, optimizer state and data position are complete and global, so training
    continues on the same global batches; only the per-rank random streams differ."""
    now = current().world_size
    return (f"resume: the checkpoint was written by {saved_world_size} process(es), this run has "
            f"{now}. Weights, optimizer state and the data position are global (batch_size is "
            "the global micro-batch), so training continues on the same batches; ranks without "
            "a saved random state start from rank 0's (dropout masks and sampling terms such as "
            "CRINGE draw differently than an uninterrupted run would).")
