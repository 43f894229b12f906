"""Timing, peak memory and correctness of one implementation at one point.

Timing: forward + backward of the loss head (``loss = impl(inputs); loss.backward()``), after
warm-up runs, repeated; on CUDA every run is bracketed by ``torch.cuda.synchronize()`` so the
wall time covers the kernels. ``--compare`` alternates the two implementations run by run
(A, B, A, B, ...) so that drift (thermal, other jobs) affects both alike.

Peak memory — the extra bytes one forward + backward needs above its inputs:

- CUDA: ``torch.cuda.reset_peak_memory_stats()``, then ``max_memory_allocated()`` after the run
  (synchronised) minus ``memory_allocated()`` before it (inputs and anything else already held).
- CPU: the process's peak resident set (``VmHWM`` in ``/proc/self/status``), reset right before
  the run by writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0), minus the resident set at
  that moment. Freed heap memory is handed back first (``malloc_trim(0)``) so a run cannot reuse
  pages that an earlier run left resident, and during the run every block ≥ 128 KiB gets pages of
  its own, returned on free (`losscraft.runtime.malloc.rss_follows_tensors`), so the peak is that of live
  tensors rather than of tensors plus heap holes. By default each CPU point runs in a **fresh
  subprocess** (``python -m losscraft.bench.memory``) that builds the inputs, warms the code up on
  a tiny shape, and measures one run, so nothing from earlier points (allocator caches, lazily
  initialised kernels) distorts the figure; ``--memory inprocess`` measures in the benchmark
  process instead (faster, less clean), ``--memory off`` skips it.

Correctness: the implementation and its reference (the objective's naive version where one
exists, else the plugin as registered) run on the first 256 positions of the point's inputs —
the implementation in the point's dtype, the reference in float64 — and the largest relative
errors of the value and of every input gradient are reported.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from losscraft.bench.grid import Point
from losscraft.bench.inputs import BenchInputs
from losscraft.runtime.malloc import rss_follows_tensors

#: Positions used by the correctness check.
CHECK_TOKENS = 256
#: Largest acceptable relative error per input dtype.
TOLERANCE = {"fp64": 1e-8, "fp32": 1e-4, "bf16": 5e-2, "fp16": 1e-2}


# ----------------------------------------------------------------------------- timing
def synchronize(device: str) -> None:
    """Wait for queued kernels on a CUDA device (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def one_step(run: Callable[[BenchInputs], torch.Tensor], inputs: BenchInputs) -> None:
    """One forward + backward of the head on ``inputs`` (gradients reset first)."""
    inputs.zero_grad()
    loss = run(inputs)
    if loss.requires_grad:
        loss.backward()


def timed(run, inputs: BenchInputs, clock=time.perf_counter) -> float:
    """Seconds for `one_step`, synchronised on CUDA before and after."""
    device = inputs.point.device
    synchronize(device)
    start = clock()
    one_step(run, inputs)
    synchronize(device)
    return clock() - start


@dataclass
class Timing:
    """Repeated timings of one implementation: median, spread and throughput."""

    times: list[float]
    tokens: int

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0.05 = ±5 % band)."""
        if len(self.times) < 4:
            return (max(self.times) - min(self.times)) / self.median if self.median else 0.0
        q = statistics.quantiles(self.times, n=4)
        return (q[2] - q[0]) / self.median if self.median else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.median if self.median else float("inf")


def measure_time(run, inputs: BenchInputs, *, warmup: int, repeats: int,
                 clock=time.perf_counter) -> Timing:
    """`warmup` untimed runs, then `repeats` timed ones."""
    for _ in range(warmup):
        one_step(run, inputs)
    return Timing([timed(run, inputs, clock) for _ in range(repeats)], inputs.point.tokens)


def measure_alternating(run_a, run_b, inputs: BenchInputs, *, warmup: int, repeats: int,
                        clock=time.perf_counter) -> tuple[Timing, Timing, list[float]]:
    """Times A and B alternately (A, B, A, B, ...) on the same inputs; also the per-pair ratios
    ``t_A / t_B``."""
    for _ in range(warmup):
        one_step(run_a, inputs)
        one_step(run_b, inputs)
    ta, tb = [], []
    for i in range(repeats):
        order = ((run_a, ta), (run_b, tb)) if i % 2 == 0 else ((run_b, tb), (run_a, ta))
        for run, out in order:
            out.append(timed(run, inputs, clock))
    return (Timing(ta, inputs.point.tokens), Timing(tb, inputs.point.tokens),
            [a / b for a, b in zip(ta, tb)])


# ----------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _trim_heap() -> None:
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def cpu_peak_supported() -> bool:
    """Whether the process peak RSS can be reset here (Linux ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        _status_kib("VmHWM")
        return True
    except OSError:
        return False


def cpu_peak_bytes(run, inputs: BenchInputs) -> int:
    """Extra resident memory of one forward + backward above what the process held before."""
    inputs.zero_grad()
    return rss_peak_of(lambda: one_step(run, inputs))


def rss_peak_of(fn: Callable[[], object]) -> int:
    """Peak resident bytes ``fn()`` adds to the process (Linux; see the module docstring)."""
    with rss_follows_tensors():
        _trim_heap()
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current VmRSS
        base = _status_kib("VmRSS")
        fn()
        return max(0, (_status_kib("VmHWM") - base) * 1024)


def cuda_peak_bytes(run, inputs: BenchInputs) -> int:
    """Extra CUDA memory of one forward + backward above what was allocated before."""
    device = inputs.point.device
    inputs.zero_grad()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    one_step(run, inputs)
    synchronize(device)
    return max(0, torch.cuda.max_memory_allocated(device) - base)


def peak_bytes_inprocess(run, inputs: BenchInputs) -> int:
    """CUDA or CPU peak memory, measured in this process."""
    if torch.device(inputs.point.device).type == "cuda":
        return cuda_peak_bytes(run, inputs)
    return cpu_peak_bytes(run, inputs)


def peak_bytes_subprocess(point: Point, impl_name: str, *, seed: int,
                          plugins: list[tuple[str, str]], timeout: float = 3600,
                          discover: dict | None = None) -> int:
    """Run `losscraft.bench.memory` in a fresh Python for one point and implementation
    (``discover``: the keyword arguments of `losscraft.bench.impls.discover`)."""
    spec = {"point": point.asdict(), "impl": impl_name, "seed": seed, "plugins": plugins,
            "discover": discover or {}}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    proc = subprocess.run([sys.executable, "-m", "losscraft.bench.memory", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory subprocess failed (exit {proc.returncode}): {tail}")
    return int(json.loads(lines[-1])["peak_bytes"])


# ----------------------------------------------------------------------------- correctness
def _result(run, inputs: BenchInputs):
    inputs.zero_grad()
    loss = run(inputs)
    grads = []
    if loss.requires_grad:
        loss.backward()
        grads = [t.grad for t in inputs.leaves]
    return loss.detach(), [None if g is None else g.double() for g in grads]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().max().item()
    return (a - b).abs().max().item() / scale if scale > 0 else (a - b).abs().max().item()


def correctness(run, ref_run, inputs: BenchInputs) -> dict[str, float]:
    """``value_rel_err`` and ``grad_rel_err`` (worst over the inputs' gradients) of ``run`` in the
    point's dtype against ``ref_run`` in float64, on the first `CHECK_TOKENS` positions."""
    mine = inputs.subset(CHECK_TOKENS, inputs.point.torch_dtype)
    ref = inputs.subset(CHECK_TOKENS, torch.float64)
    v, g = _result(run, mine)
    rv, rg = _result(ref_run, ref)
    lowered = rv.dtype != torch.float64
    value_err = abs(v.item() - rv.item()) / max(abs(rv.item()), 1e-12)
    grad_err = 0.0
    for a, b in zip(g, rg):
        if a is None or b is None:
            if (a is None) != (b is None):
                grad_err = float("inf")
            continue
        grad_err = max(grad_err, _rel(a, b))
    # a reference that casts float64 inputs down (``ctx.logits.float()``) is no float64 check
    return {"value_rel_err": value_err, "grad_rel_err": grad_err, "reference_lowered": lowered}
