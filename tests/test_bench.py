"""`losscraft bench`: a tiny CPU grid writes well-formed JSON / CSV (no timing assertions), a
third-party objective registered from this test module is benchmarked without extra code, the
CUDA timing / memory path against a fake CUDA runtime, --compare, and clear errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys

import pytest
import torch
from click.testing import CliRunner

from conftest import registry_with
from losscraft import LossOutput, hookimpl
from losscraft.bench import measure
from losscraft.bench.grid import BenchError, Point, check_device, make_grid, parse_ints
from losscraft.bench.impls import discover, select
from losscraft.bench.inputs import SyntheticContext, make_inputs
from losscraft.app.reports.bench_report import COMPARE_FIELDS, ROW_FIELDS, to_json, write_all
from losscraft.bench.runner import Options, run_compare, run_grid
from losscraft.app.main import main
from losscraft.functional import token_nll
from losscraft.plugins.registry import get_registry

TINY = dict(tokens=(16,), vocab=(64,), dtypes=("fp32",), devices=("cpu",), experts=(2,),
            inputs=("logits", "hidden"), hidden=16)


# ------------------------------------------------------------------ a third-party objective
class SquaredNLL:
    """A third-party objective: the square of the token NLL (test-only)."""

    def __init__(self, power: float = 2.0):
        self.power = power

    def __call__(self, ctx):
        nll = token_nll(ctx.logits, ctx.batch.targets, ctx.batch.response_mask)
        return LossOutput(nll ** self.power)


@hookimpl
def register_objectives(register):
    register("bench_squared_nll", SquaredNLL)


@pytest.fixture
def registry():
    yield from registry_with(sys.modules[__name__], "bench_test_plugin")


def tiny_result(registry, patterns=None, memory="inprocess"):
    impls = discover(registry)
    chosen = select(impls, patterns)
    points = make_grid(**TINY)
    return run_grid(points, chosen, Options(warmup=1, repeats=2, memory=memory),
                    all_impls=impls, registry=registry)


# ------------------------------------------------------------------ the grid
def test_tiny_grid_writes_well_formed_json_and_csv(registry, tmp_path):
    result = tiny_result(registry)
    paths = write_all(result, tmp_path / "tiny")
    data = json.loads(paths[0].read_text())
    meta = data["meta"]
    assert meta["torch"] == torch.__version__ and meta["transformers"]
    assert meta["devices"]["cpu"]  # the CPU model name
    rows = data["rows"]
    names = {r["impl"] for r in rows}
    # Every registered objective and the bench-only js head appear, in every input kind.
    for objective in registry.names("objective"):
        assert any(n.startswith(objective + ":") for n in names), objective
    assert {"safety_loss:naive", "safety_loss:plugin", "safety_loss:fused", "nll:fused",
            "js:chunked", "js:fused"} <= names
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok, rows
    for r in ok:
        assert r["median_s"] > 0 and r["tokens_per_s"] > 0 and len(r["times_s"]) == 2
        assert r["peak_bytes"] is None or r["peak_bytes"] >= 0
        for key in ("tokens", "vocab", "hidden", "dtype", "device", "experts", "input"):
            assert key in r
    # The fused and chunked heads agree with the naive reference.
    checked = {r["impl"] + "/" + r["input"]: r for r in ok if "correct" in r}
    for key in ("safety_loss:fused/hidden", "safety_loss:plugin/logits", "nll:fused/hidden",
                "js:fused/hidden", "js:chunked/logits", "socially_aware_npair:fused/hidden"):
        assert checked[key]["correct"], checked[key]
    # Fused variants on logits inputs are skipped with the reason, not errors.
    skipped = [r for r in rows if r["impl"] == "safety_loss:fused" and r["input"] == "logits"]
    assert skipped[0]["status"] == "skipped" and "--input hidden" in skipped[0]["reason"]
    with paths[1].open() as fh:
        lines = list(csv.DictReader(fh))
    assert len(lines) == len(rows)
    assert list(lines[0])[:len(ROW_FIELDS)] == list(ROW_FIELDS)
    assert {line["device_name"] for line in lines} == {meta["devices"]["cpu"]}


def test_third_party_objective_is_benchmarked_without_extra_code(registry, tmp_path):
    impls = discover(registry)
    assert {i.name for i in impls if i.objective == "bench_squared_nll"} == \
        {"bench_squared_nll:plugin"}
    # Its memory is measured in a fresh subprocess, which registers this module again.
    result = tiny_result(registry, ("bench_squared_nll",), memory="subprocess")
    rows = {r["input"]: r for r in result.rows}
    for kind in ("logits", "hidden"):
        row = rows[kind]
        assert row["status"] == "ok", row
        assert row["plugin"] == "bench_test_plugin" and row["correct"]
        if measure.cpu_peak_supported():
            assert row["peak_bytes"] > 0


def test_cli_quick_writes_files(registry, tmp_path):
    runner = CliRunner()
    out = tmp_path / "q"
    res = runner.invoke(main, ["bench", "--quick", "--impl", "safety_loss", "--impl",
                               "bench_squared_nll", "--memory", "off", "--no-progress",
                               "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "bench.json").read_text())
    assert data["meta"]["command"].startswith("losscraft bench")
    assert {r["impl"] for r in data["rows"]} >= {"safety_loss:fused", "bench_squared_nll:plugin"}
    assert "safety_loss:fused" in res.output
    listing = runner.invoke(main, ["bench", "--list"])
    assert listing.exit_code == 0 and "bench_squared_nll:plugin" in listing.output


def test_compare_alternates_and_writes_ratios(registry, tmp_path):
    impls = discover(registry)
    (a,), (b,) = select(impls, ("safety_loss:fused",)), select(impls, ("safety_loss:naive",))
    points = [Point(tokens=16, vocab=64, hidden=16, input="hidden"),
              Point(tokens=16, vocab=64, hidden=16, input="logits")]
    result = run_compare(points, a, b, Options(warmup=1, repeats=3, memory="inprocess"),
                         all_impls=impls)
    ok, skipped = result.comparisons
    assert ok["status"] == "ok" and ok["time_ratio"] > 0
    assert ok["time_ratio_min"] <= ok["time_ratio"] <= ok["time_ratio_max"]
    assert skipped["status"] == "skipped" and "--input hidden" in skipped["reason"]
    assert all(r["alternated"] and r["correct"] for r in result.rows)
    paths = write_all(result, tmp_path / "cmp")
    with paths[2].open() as fh:
        lines = list(csv.DictReader(fh))
    assert list(lines[0])[:len(COMPARE_FIELDS)] == list(COMPARE_FIELDS)
    json.dumps(to_json(result), allow_nan=False)


def test_alternating_order_and_ratios():
    calls = []
    inputs = make_inputs(Point(tokens=4, vocab=8, hidden=4), expert_names=(), negatives=False)
    inputs.logits = None  # runs below never touch inputs' leaves
    inputs.head = None
    inputs.zero_grad = lambda: None

    def runner(tag):
        def run(_):
            calls.append(tag)
            return torch.zeros(())
        return run

    ticks = iter(range(100))
    ta, tb, ratios = measure.measure_alternating(runner("a"), runner("b"), inputs, warmup=1,
                                                 repeats=4, clock=lambda: next(ticks))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]
    assert ta.times == tb.times == [1, 1, 1, 1] and ratios == [1.0] * 4


# ------------------------------------------------------------------ CUDA path, faked on CPU
class FakeCuda:
    """Stands in for torch.cuda: records synchronisation; memory counters are scripted."""

    def __init__(self):
        self.events = []
        self.allocated = 1000

    def synchronize(self, device=None):
        self.events.append("sync")

    def reset_peak_memory_stats(self, device=None):
        self.events.append("reset")

    def memory_allocated(self, device=None):
        return self.allocated

    def max_memory_allocated(self, device=None):
        return self.allocated + 4096


def test_cuda_timing_and_memory_path_with_fake_runtime(monkeypatch):
    fake = FakeCuda()
    for name in ("synchronize", "reset_peak_memory_stats", "memory_allocated",
                 "max_memory_allocated"):
        monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
    cpu_point = Point(tokens=8, vocab=16, hidden=8, input="logits")
    inputs = make_inputs(cpu_point, expert_names=("clean", "toxic"), negatives=False)
    inputs.point = dataclasses.replace(cpu_point, device="cuda")  # tensors stay on the CPU
    impls = {i.name: i for i in discover(get_registry())}
    run = impls["safety_loss:plugin"].runner(cpu_point)

    def fake_run(inp):
        fake.events.append("run")
        return run(inp)

    seconds = measure.timed(fake_run, inputs)
    assert seconds >= 0 and fake.events == ["sync", "run", "sync"]
    fake.events.clear()
    assert measure.peak_bytes_inprocess(fake_run, inputs) == 4096
    assert fake.events == ["sync", "reset", "run", "sync"]
    assert inputs.logits.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_point_runs_on_gpu(registry):  # pragma: no cover - only with a GPU
    impls = discover(registry)
    points = [Point(tokens=64, vocab=512, hidden=64, device="cuda", input="hidden")]
    result = run_grid(points, select(impls, ("safety_loss",)), Options(warmup=1, repeats=2),
                      all_impls=impls)
    assert all(r["status"] in ("ok", "skipped") for r in result.rows)
    assert any(r.get("peak_bytes") for r in result.rows)


def test_liger_only_where_installed(monkeypatch):
    from losscraft.bench import reference
    monkeypatch.setattr(reference, "liger_available", lambda: False)
    assert not [i for i in discover(get_registry()) if "liger" in i.variant]
    monkeypatch.setattr(reference, "liger_available", lambda: True)
    liger = {i.name: i for i in discover(get_registry()) if "liger" in i.variant}
    assert set(liger) == {"safety_loss:liger", "safety_loss:liger_fused"}
    assert liger["safety_loss:liger"].unavailable(Point(8, 16)) == "runs on cuda only"


# ------------------------------------------------------------------ inputs and errors
def test_synthetic_context_serves_objectives():
    point = Point(tokens=12, vocab=32, hidden=8, input="hidden")
    inputs = make_inputs(point, expert_names=("clean",), negatives=True)
    ctx = SyntheticContext(inputs)
    assert ctx.logits.shape == (2, 6, 32)
    assert torch.allclose(ctx.logits, inputs.head.logits())
    assert ctx.expert_head("clean") is inputs.expert_heads["clean"]
    assert ctx.batch.num_negatives == 2 and set(ctx.batch.segment_ids.unique().tolist()) == \
        {1, 2, 3}
    from losscraft import ModelError
    with pytest.raises(ModelError, match="not part of this benchmark"):
        ctx.expert_logits("toxic")
    logits_ctx = SyntheticContext(make_inputs(dataclasses.replace(point, input="logits"),
                                              expert_names=(), negatives=False))
    with pytest.raises(ModelError, match="--input hidden"):
        logits_ctx.head


def test_bad_bench_inputs_are_clear_errors(registry):
    impls = discover(registry)
    with pytest.raises(BenchError, match="no benchmark implementation matches 'safety_los'.*"
                                         "did you mean"):
        select(impls, ("safety_los",))
    with pytest.raises(BenchError, match="--tokens: 'x' is not an integer"):
        parse_ints("512,x", "tokens")
    assert parse_ints("8k,1_024", "tokens") == (8192, 1024)
    if not torch.cuda.is_available():
        with pytest.raises(BenchError, match="no CUDA device"):
            check_device("cuda")
    with pytest.raises(BenchError, match="--memory"):
        Options(memory="rss")
    runner = CliRunner()
    res = runner.invoke(main, ["bench", "--compare", "js", "nll", "--quick"])
    assert res.exit_code == 1 and "no benchmark implementation matches 'js:plugin'" in res.output
    res = runner.invoke(main, ["bench", "--dtype", "fp8", "--memory", "off"])
    assert res.exit_code == 1 and "unknown value 'fp8'" in res.output


def test_correctness_flags_a_wrong_implementation():
    point = Point(tokens=8, vocab=16, hidden=8)
    inputs = make_inputs(point, expert_names=(), negatives=False)
    impls = {i.name: i for i in discover(get_registry())}
    good = impls["nll:plugin"].runner(point)
    errs = measure.correctness(lambda inp: 1.01 * good(inp), impls["nll:naive"].runner(point),
                               inputs)
    assert math.isclose(errs["value_rel_err"], 0.01, rel_tol=1e-3)
    assert errs["grad_rel_err"] > 5e-3


# ------------------------------------------------------------------ full-step mode
def test_full_step_on_tiny_model(registry, tmp_path):
    from losscraft.bench.fullstep import run_full_step
    from losscraft.bench.step_timing import SHARES

    result = run_full_step("tiny", patterns=("flatgd-fd", "bench_squared"), repeats=2, warmup=1,
                           rows=2, registry=registry)
    rows = {r["config"]: r for r in result.rows}
    assert {"nll", "safety_loss", "flatgd-fd", "flatgd-fd:fused", "safety_loss:fused",
            "bench_squared_nll"} <= set(rows)
    for r in rows.values():
        assert r["status"] == "ok", r
        assert r["ratio_to_nll"] > 0 and r["median_s"] > 0
        shares = [r[f"share_{s}"] for s in SHARES]
        assert all(s >= 0 for s in shares) and 0.5 < sum(shares) <= 1.05
    assert rows["nll"]["ratio_to_nll"] == 1.0
    fd = rows["flatgd-fd"]
    assert fd["base"] == "safety_loss" and fd["ratio_to_base"] > 0 and fd["share_penalty"] > 0
    assert rows["safety_loss"]["share_expert_forwards"] > 0
    paths = write_all(result, tmp_path / "steps")
    with paths[1].open() as fh:
        lines = list(csv.DictReader(fh))
    assert {line["config"] for line in lines} == set(rows)
    json.loads(paths[0].read_text())


def test_full_step_rows_at_the_recipes_limits(registry):
    from losscraft.bench.fullstep import run_full_step
    from losscraft.bench.step_setup import RECIPE_CONTEXT_TOKENS, RECIPE_RESPONSE_TOKENS

    short = run_full_step("tiny", patterns=("safety_loss",), repeats=1, warmup=0, rows=2,
                          registry=registry)
    long = run_full_step("tiny", patterns=("safety_loss",), repeats=1, warmup=0, rows=2,
                         registry=registry, row_length="recipe")
    s, r = short.rows[0], long.rows[0]
    assert s["row_length"] == "short" and r["row_length"] == "recipe"
    # Every row is truncated to the recipes' limits (the tiny tokenizer is byte-level).
    assert r["length"] == RECIPE_CONTEXT_TOKENS + RECIPE_RESPONSE_TOKENS > 2 * s["length"]
    assert r["response_tokens"] == 2 * RECIPE_RESPONSE_TOKENS
    with pytest.raises(BenchError, match="--row-length must be one of short, recipe"):
        run_full_step("tiny", repeats=1, warmup=0, rows=1, registry=registry, row_length="huge")
