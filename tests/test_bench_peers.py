"""`losscraft bench --peers`: each peer adapter (Liger's chunked-loss fused linear JSD, compiled
and eager; TRL's ``generalized_jsd_loss``; pytorch-metric-learning's ``NPairsLoss``) agrees in
value and gradient with losscraft's own head on a small shape (skipped only where the peer is
not installed), and the peers table pairs each peer with losscraft's implementation."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from losscraft.app.main import main
from losscraft.app.reports.bench_report import peers_table
from losscraft.bench import peers
from losscraft.bench.grid import Point
from losscraft.bench.impls import discover, select
from losscraft.bench.runner import Options, run_grid
from losscraft.plugins.registry import get_registry

CASES = [("liger", "js:liger", "js:naive", "hidden"),
         ("liger", "js:liger_eager", "js:naive", "hidden"),
         ("trl", "js:trl", "js:naive", "logits"),
         ("trl", "js:trl", "js:naive", "hidden"),
         ("pml", "npair:pml", "npair:losscraft", "hidden")]


@pytest.mark.parametrize("peer,name,reference,kind", CASES)
@pytest.mark.parametrize("experts", [1, 2])
def test_peer_agrees_with_losscraft(peer, name, reference, kind, experts):
    pytest.importorskip(peers._MODULES[peer])
    impls = discover(get_registry(), peers=True)
    (impl,) = select(impls, (name,))
    assert impl.reference == reference
    point = Point(tokens=24, vocab=40, hidden=12, experts=experts, input=kind)
    row = run_grid([point], [impl], Options(warmup=0, repeats=1, memory="off"),
                   all_impls=impls).rows[0]
    assert row["status"] == "ok", row
    assert row["reference"].startswith(f"{reference}@float64")  # npair: computes in float32
    assert row["correct"], (row["value_rel_err"], row["grad_rel_err"])


def test_peers_only_with_the_flag_and_only_when_installed(monkeypatch):
    names = {i.name for i in discover(get_registry())}
    assert not names & {"js:liger", "js:trl", "npair:pml", "npair:losscraft"}
    monkeypatch.setattr(peers, "installed", lambda peer: False)
    names = {i.name for i in discover(get_registry(), peers=True)}
    assert "npair:losscraft" in names and not names & {"js:liger", "js:trl", "npair:pml"}


def test_cli_prints_the_peers_table():
    pytest.importorskip("trl")
    res = CliRunner().invoke(main, ["bench", "--impl", "js:chunked", "--impl", "js:trl",
                                    "--peers", "--tokens", "16", "--vocab", "32", "--input",
                                    "logits", "--experts", "1", "--memory", "off", "--repeats",
                                    "1", "--warmup", "0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "peers (peer / losscraft" in res.output and "js:trl" in res.output


def test_peers_table_ratios():
    from losscraft.bench.runner import BenchResult
    base = dict(tokens=8, vocab=16, dtype="fp32", device="cpu", input="hidden", experts=1,
                status="ok")
    result = BenchResult({}, rows=[
        {**base, "impl": "js:fused", "median_s": 1.0, "peak_bytes": 100},
        {**base, "impl": "js:liger", "median_s": 2.5, "peak_bytes": 300, "correct": True}])
    table = peers_table(result)
    cells = [list(col.cells) for col in table.columns]
    assert cells[0] == ["js:liger"] and cells[1] == ["js:fused"]
    assert cells[6] == ["2.50"] and cells[7] == ["3.00"]
    assert peers_table(BenchResult({}, rows=result.rows[:1])) is None
