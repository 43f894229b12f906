"""Run a grid of points × implementations (or a ``--compare A B`` pair) and collect rows."""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from losscraft.bench import measure
from losscraft.bench.grid import BenchError, Point
from losscraft.bench.impls import Impl
from losscraft.bench.inputs import make_inputs

MEMORY_MODES = ("subprocess", "inprocess", "off")


@dataclass
class Options:
    """How each point is measured (see `losscraft.bench.measure`)."""

    warmup: int = 2
    repeats: int = 7
    memory: str = "subprocess"   # CPU only; CUDA always measures in-process
    check: bool = True
    seed: int = 0
    discover: dict = field(default_factory=dict)  # `impls.discover` kwargs, for subprocesses

    def __post_init__(self):
        if self.memory not in MEMORY_MODES:
            raise BenchError(f"--memory must be one of {', '.join(MEMORY_MODES)}, "
                             f"got {self.memory!r}")
        if self.repeats < 1 or self.warmup < 0:
            raise BenchError("--repeats must be ≥ 1 and --warmup ≥ 0")


@dataclass
class BenchResult:
    """Machine description, the rows, and (for ``--compare``) the ratio rows."""

    meta: dict
    rows: list[dict] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)


def device_name(device: str) -> str:
    """The GPU's name, or the CPU model from ``/proc/cpuinfo``."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_meta(devices, command: str = "") -> dict:
    """Versions, devices, threads and load: what RESULTS.md needs beside every figure."""
    try:
        import transformers
        tf_version = transformers.__version__
    except ImportError:  # pragma: no cover - a dependency of losscraft
        tf_version = None
    from importlib.metadata import PackageNotFoundError, version
    try:
        lc_version = version("losscraft")
    except PackageNotFoundError:  # pragma: no cover
        lc_version = None
    try:
        load = list(os.getloadavg())
    except OSError:  # pragma: no cover
        load = None
    return {
        "command": command,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "torch": torch.__version__, "transformers": tf_version, "losscraft": lc_version,
        "python": platform.python_version(), "platform": platform.platform(),
        "devices": {d: device_name(d) for d in devices},
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average_start": load,
    }


def extra_plugins(registry, impls: list[Impl]) -> list[tuple[str, str]]:
    """Plugins registered from code (no distribution) that a subprocess must import again."""
    out = []
    for name in sorted({i.plugin for i in impls if i.plugin}):
        info = registry.plugins.get(name)
        if info is None or info.distribution:
            continue
        obj = registry.pm.get_plugin(name)
        if isinstance(obj, types.ModuleType):
            out.append((name, obj.__name__))
    return out


def _base_row(impl: Impl, point: Point) -> dict:
    return {"impl": impl.name, "objective": impl.objective, "variant": impl.variant,
            "plugin": impl.plugin, **point.asdict(), "rows": point.rows,
            "length": point.length, "status": "ok", "reason": ""}


def _memory(impl: Impl, point: Point, run, inputs, options: Options, plugins) -> int | None:
    if torch.device(point.device).type == "cuda":
        return measure.cuda_peak_bytes(run, inputs)
    if options.memory == "off" or not measure.cpu_peak_supported():
        return None
    if options.memory == "inprocess":
        return measure.cpu_peak_bytes(run, inputs)
    return measure.peak_bytes_subprocess(point, impl.name, seed=options.seed, plugins=plugins,
                                         discover=options.discover)


def bench_point(impl: Impl, point: Point, options: Options, *, by_name: dict[str, Impl],
                plugins, inputs=None) -> dict:
    """Every measure of one implementation at one point, as a row (errors become a row)."""
    row = _base_row(impl, point)
    reason = impl.unavailable(point)
    if reason:
        row.update(status="skipped", reason=reason)
        return row
    try:
        run = impl.runner(point)
        if inputs is None:
            inputs = make_inputs(point, expert_names=impl.expert_names(point),
                                 negatives=impl.negatives, seed=options.seed)
        timing = measure.measure_time(run, inputs, warmup=options.warmup,
                                      repeats=options.repeats)
        row.update(median_s=timing.median, spread=timing.spread,
                   tokens_per_s=timing.tokens_per_s, repeats=options.repeats,
                   times_s=timing.times, input_bytes=inputs.nbytes())
        peak = _memory(impl, point, run, inputs, options, plugins)
        row.update(peak_bytes=peak, peak_mib=None if peak is None else peak / 2 ** 20)
        if options.check and impl.reference and impl.reference in by_name:
            ref = by_name[impl.reference]
            errs = measure.correctness(run, ref.runner(point), inputs)
            tol = measure.TOLERANCE[point.dtype]
            # every reference runs on float64 inputs; a third-party objective without a
            # textbook reference is its own reference (then only its float32 rounding is seen)
            lowered = errs.pop("reference_lowered", False)
            row.update(errs, reference=f"{ref.name}@float64"
                       + (" (computes in float32: no float64 check)" if lowered else ""),
                       correct=errs["value_rel_err"] <= tol and errs["grad_rel_err"] <= tol)
    except Exception as exc:  # noqa: BLE001 - one failing implementation must not stop a grid
        row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    finally:
        inputs = None
        gc.collect()
    return row


def run_grid(points: list[Point], impls: list[Impl], options: Options, *, all_impls=None,
             registry=None, meta: dict | None = None,
             progress: Callable[[str], None] | None = None) -> BenchResult:
    """Benchmark every implementation at every point; ``progress(label)`` after each."""
    by_name = {i.name: i for i in (all_impls or impls)}
    plugins = extra_plugins(registry, impls) if registry is not None else []
    result = BenchResult(meta or machine_meta(sorted({p.device for p in points})))
    for point in points:
        for impl in impls:
            result.rows.append(bench_point(impl, point, options, by_name=by_name,
                                           plugins=plugins))
            if progress:
                progress(f"{impl.name} @ {point.label()}")
    return result


def run_compare(points: list[Point], a: Impl, b: Impl, options: Options, *, all_impls=None,
                registry=None, meta: dict | None = None,
                progress: Callable[[str], None] | None = None) -> BenchResult:
    """A and B on the same inputs, timed alternately; each also gets its own full row (memory,
    correctness). Ratio rows: ``time_ratio`` = median of the per-pair ``t_A/t_B``."""
    by_name = {i.name: i for i in (all_impls or [a, b])}
    plugins = extra_plugins(registry, [a, b]) if registry is not None else []
    result = BenchResult(meta or machine_meta(sorted({p.device for p in points})))
    for point in points:
        reasons = [r for r in (a.unavailable(point), b.unavailable(point)) if r]
        cmp = {"a": a.name, "b": b.name, **point.asdict()}
        if reasons:
            cmp.update(status="skipped", reason="; ".join(reasons))
            result.comparisons.append(cmp)
            if progress:
                progress(f"{a.name} vs {b.name} @ {point.label()}")
            continue
        try:
            names = tuple(dict.fromkeys(a.expert_names(point) + b.expert_names(point)))
            inputs = make_inputs(point, expert_names=names, negatives=a.negatives or b.negatives,
                                 seed=options.seed)
            run_a, run_b = a.runner(point), b.runner(point)
            ta, tb, ratios = measure.measure_alternating(
                run_a, run_b, inputs, warmup=options.warmup, repeats=options.repeats)
            rows = []
            for impl, t in ((a, ta), (b, tb)):
                row = bench_point(impl, point, replace(options, warmup=0, repeats=1),
                                  by_name=by_name, plugins=plugins, inputs=inputs)
                row.update(median_s=t.median, spread=t.spread, tokens_per_s=t.tokens_per_s,
                           repeats=options.repeats, times_s=t.times, alternated=True)
                rows.append(row)
            result.rows += rows
            peak_a, peak_b = rows[0].get("peak_bytes"), rows[1].get("peak_bytes")
            cmp.update(status="ok", reason="", median_a_s=ta.median, median_b_s=tb.median,
                       time_ratio=statistics.median(ratios),
                       time_ratio_min=min(ratios), time_ratio_max=max(ratios),
                       peak_a_bytes=peak_a, peak_b_bytes=peak_b,
                       memory_ratio=(peak_a / peak_b) if peak_a is not None and peak_b else None)
        except Exception as exc:  # noqa: BLE001
            cmp.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        finally:
            inputs = None
            gc.collect()
        result.comparisons.append(cmp)
        if progress:
            progress(f"{a.name} vs {b.name} @ {point.label()}")
    return result
