"""`losscraft bench` for plugin authors (issue 21): ``--param NAME.KEY=VALUE`` builds objectives
with required parameters, ``--compare A B`` assumes the plugin variant, a bench where every point
is skipped exits non-zero, and a third-party objective is checked against itself in float64."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from click.testing import CliRunner

from conftest import registry_with
from losscraft import LossOutput, hookimpl
from losscraft.app.main import main
from losscraft.bench.grid import BenchError, Point
from losscraft.bench.impls import discover, select
from losscraft.bench.params import check_something_ran, parse_params
from losscraft.bench.runner import BenchResult, Options, run_grid
from losscraft.functional import token_nll

SMALL = ["--tokens", "16", "--vocab", "64", "--hidden", "16", "--memory", "off",
         "--repeats", "1", "--warmup", "0", "--no-progress"]


class PowerNLL:
    """Token NLL to a required power (no default: not buildable without --param)."""

    def __init__(self, power: float):
        self.power = power

    def __call__(self, ctx):
        return LossOutput(token_nll(ctx.logits, ctx.batch.targets,
                                    ctx.batch.response_mask) ** self.power)


class SloppyNLL:
    """Adds a large constant to the logits "for stability": harmless in float64, but float32
    rounds the logits to steps of 1/16 — the float64 self-reference must catch it."""

    def __call__(self, ctx):
        logp = torch.log_softmax(ctx.logits + 1e6, -1)  # in the inputs' dtype
        picked = logp.gather(-1, ctx.batch.targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        mask = ctx.batch.response_mask
        return LossOutput(-(picked * mask).sum() / mask.sum())


class LoweredNLL(SloppyNLL):
    """Casts its logits to float32 (as the plugin scaffold does): no float64 check possible."""

    def __call__(self, ctx):
        return LossOutput(torch.log_softmax(ctx.logits.float(), -1)[..., 0].mean())


@hookimpl
def register_objectives(register):
    register("bench_lowered_nll", LoweredNLL)
    register("bench_power_nll", PowerNLL)
    register("bench_sloppy_nll", SloppyNLL)


@pytest.fixture
def registry():
    yield from registry_with(sys.modules[__name__], "bench_params_plugin")


def _bench(*args):
    return CliRunner().invoke(main, ["bench", *args])


def test_parse_params_values_and_errors():
    assert parse_params(["a.x=2.0", "a.y=true", "b.z=[1, 2]", "b.w=text"]) == {
        "a": {"x": 2.0, "y": True}, "b": {"z": [1, 2], "w": "text"}}
    for bad, match in (("a", "expected NAME.KEY=VALUE"), ("a.=1", "expected NAME.KEY=VALUE"),
                       (".x=1", "expected NAME.KEY=VALUE"), ("a.x-y=1", "not a parameter name"),
                       ):
        with pytest.raises(BenchError, match=match):
            parse_params([bad])
    with pytest.raises(BenchError, match="given twice"):
        parse_params(["a.x=1", "a.x=2"])


def test_required_parameter_needs_param_and_runs_with_it(registry, tmp_path):
    impls = {i.name: i for i in discover(registry)}
    err = impls["bench_power_nll:plugin"].error
    assert "cannot build with default parameters" in err and "--param bench_power_nll." in err
    res = _bench("--impl", "bench_power_nll", *SMALL)
    assert res.exit_code == 1 and "nothing was benchmarked" in res.output
    out = tmp_path / "p"
    res = _bench("--impl", "bench_power_nll", "--param", "bench_power_nll.power=2.0",
                 "--input", "logits", "--out", str(out), *SMALL)
    assert res.exit_code == 0, res.output
    (row,) = json.loads((out / "bench.json").read_text())["rows"]
    assert row["status"] == "ok" and row["correct"], row
    assert row["reference"] == "bench_power_nll:plugin@float64"


def test_bad_params_are_one_line_errors(registry):
    for args, text in ((["--param", "bench_power_nll.power=two"], "cannot build with --param"),
                       (["--param", "bench_power_nl.power=2"], "did you mean 'bench_power_nll'"),
                       (["--param", "bench_power_nll.nope=2"], "cannot build with --param"),
                       (["--param", "power=2"], "expected NAME.KEY=VALUE")):
        res = _bench("--impl", "bench_power_nll", "--input", "logits", *args, *SMALL)
        assert res.exit_code == 1, res.output
        assert text in res.output and "Traceback" not in res.output, res.output


def test_compare_assumes_the_plugin_variant(registry):
    res = _bench("--compare", "bench_power_nll", "nll", "--param", "bench_power_nll.power=1.0",
                 "--input", "logits", *SMALL)
    assert res.exit_code == 0, res.output
    assert "bench_power_nll:plugin" in res.output and "nll:plugin" in res.output


def test_compare_measures_memory_with_the_params(registry, tmp_path):
    """--compare's memory subprocesses get --param (and --peers) like the grid's: a plugin that
    cannot build without its parameter is measured, not an error row."""
    out = tmp_path / "c"
    small = [a for a in SMALL if a not in ("--memory", "off")]
    res = _bench("--compare", "bench_power_nll", "nll", "--param", "bench_power_nll.power=1.0",
                 "--input", "logits", "--memory", "subprocess", "--out", str(out), *small)
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "bench.json").read_text())["rows"]
    power = [r for r in rows if r["impl"] == "bench_power_nll:plugin"]
    assert power and all(r["status"] == "ok" for r in power), power
    assert all(r.get("peak_bytes") for r in power), power


def test_every_point_skipped_exits_non_zero(registry):
    res = _bench("--impl", "js:fused", "--input", "logits", *SMALL)
    assert res.exit_code == 1
    assert "nothing was benchmarked" in res.output and "needs --input hidden" in res.output
    with pytest.raises(BenchError):
        check_something_ran(BenchResult({}, rows=[{"status": "skipped", "reason": "x"}]))
    check_something_ran(BenchResult({}, rows=[{"status": "skipped"}, {"status": "ok"}]))


def test_float64_self_reference_catches_a_sloppy_objective(registry):
    impls = discover(registry)
    chosen = select(impls, ("bench_sloppy_nll",))
    assert [i.reference for i in chosen] == ["bench_sloppy_nll:plugin"]  # its own reference
    point = Point(tokens=16, vocab=64, hidden=16, input="logits")
    result = run_grid([point], chosen, Options(warmup=0, repeats=1, memory="off"),
                      all_impls=impls)
    row = result.rows[0]
    assert row["reference"] == "bench_sloppy_nll:plugin@float64"
    assert row["correct"] is False, {k: row[k] for k in ("value_rel_err", "grad_rel_err")}
    # ...while the same objective computed honestly passes against its float64 self
    honest = discover(registry, {"bench_power_nll": {"power": 1.0}})
    (impl,) = select(honest, ("bench_power_nll",))
    row = run_grid([point], [impl], Options(warmup=0, repeats=1, memory="off"),
                   all_impls=honest).rows[0]
    assert row["correct"] and row["value_rel_err"] < 1e-5
    # an objective that casts its inputs to float32 gets no float64 check, and the label says so
    (impl,) = select(impls, ("bench_lowered_nll",))
    row = run_grid([point], [impl], Options(warmup=0, repeats=1, memory="off"),
                   all_impls=impls).rows[0]
    assert row["reference"] == ("bench_lowered_nll:plugin@float64 (computes in float32: "
                                "no float64 check)")
