"""The λ study (``make flatgd-table1 LAMBDAS="0 1"``) and the experts check of FlatGD's Table 1
(losscraft.app.experiments.flatgd_lambda): the smoke scale end to end on tiny models, the
plan's commands at the default scale, the check's verdicts on fake evaluations."""

from __future__ import annotations

import csv
import json

import pytest

from losscraft.app.experiments import flatgd_lambda as L
from losscraft.app.experiments import flatgd_table1 as T
from losscraft.errors import LosscraftError
from losscraft.evaluation.result import EVAL_FILE
from test_bootstrap import fake_eval


def _opts(scale, tmp_path, **kw):
    return T.Options(scale=T.SCALES[scale], out=tmp_path / scale, models=["flatgd"], **kw)


def test_lambdas_are_parsed_and_bad_ones_refused():
    assert L.parse_lambdas("0 0.01 1 100") == [0.0, 0.01, 1.0, 100.0]
    assert L.parse_lambdas("0,1e-2") == [0.0, 0.01]
    for bad in ("", "a", "1 1", "-1", "nan"):
        with pytest.raises(LosscraftError, match="--lambdas"):
            L.parse_lambdas(bad)


def test_default_scale_plan_trains_each_lambda_on_one_pair_of_experts(tmp_path):
    opts = _opts("default", tmp_path, lambdas=[0.0, 0.01, 100.0])
    plan = T.build_plan(opts)
    trains = [s for s in plan if s.kind == "train"]
    assert [s.label for s in trains] == ["train FlatGD λ=0", "train FlatGD λ=0.01",
                                         "train FlatGD λ=100"]
    first = tmp_path / "default" / "lambda-0"
    for i, (step, lam) in enumerate(zip(trains, opts.lambdas)):
        sets = [step.argv[j + 1] for j, a in enumerate(step.argv) if a == "--set"]
        assert f"stages.main.terms.safety.penalty.weight={lam!r}" in sets
        assert f"run.output_dir={tmp_path / 'default' / f'lambda-{lam:g}'}" in sets
        assert "lora.init_b_std=0.001" in sets and "stages.main.max_steps=32" in sets
        assert ("stages.toxic_expert.keep_model=true" in sets) == (i == 0)
        assert ("stages.clean_expert.enabled=false" in sets) == (i > 0)
        if i:
            assert (f'experts.toxic={{ plugin = "hf", path = '
                    f'"{first / "stages" / "toxic_expert" / "model"}" }}') in sets
    assert trains[-1].after is not None and all(s.after is None for s in trains[:-1])
    experts = [s for s in plan if s.kind == "expert"]
    assert len(experts) == 4 and all("--reference" in s.argv for s in experts)
    evals = [s.argv for s in plan if s.kind == "eval"]
    assert len(evals) == 6 and all(a[a.index("--reference") + 1] == "embedded" for a in evals)
    assert [s.kind for s in plan][-2:] == ["compare", "study"]


def test_smoke_lambda_study_end_to_end(tmp_path, capsys):
    """Tiny models, λ = 0 and 1: FlatGD trained twice on one pair of experts, the experts
    checked (equally safe tiny models: the warning fires), the table, CSV and plot written."""
    opts = _opts("smoke", tmp_path, lambdas=[0.0, 1.0])
    T.run_table1(opts)
    out = capsys.readouterr().out
    assert "the λ study:" in out
    assert "warning: the toxic expert is not measurably more unsafe than the clean one" in out
    cmp_dir = tmp_path / "smoke" / "comparison"
    md = (cmp_dir / "lambda_study.md").read_text()
    assert "| 0 | " in md and "| 1 | " in md and (cmp_dir / "lambda_study.png").is_file()
    rows = list(csv.DictReader((cmp_dir / "lambda_study.csv").open()))
    assert len(rows) == 4  # two λ × two test sets
    by_lambda = {float(r["lambda"]): r for r in rows}
    assert by_lambda[0.0]["share_median"] == ""
    assert float(by_lambda[1.0]["share_median"]) > 0
    assert all(r["perplexity"] != "" and r["ci_low"] != "" for r in rows)
    check = (cmp_dir / L.CHECK_FILE).read_text()
    assert "toxic expert is not measurably more unsafe" in check
    # the toxic expert, its replies, and no second copy of the experts are left
    first = tmp_path / "smoke" / "lambda-0" / "stages"
    assert not (first / "toxic_expert" / "model").exists()
    assert (first / "clean_expert" / "model").is_dir()
    assert not list((tmp_path / "smoke" / "experts" / "toxic_expert").rglob(EVAL_FILE))
    assert not (tmp_path / "smoke" / "lambda-1" / "stages" / "clean_expert").exists()
    # the penalty's share during training, per model, in the comparison
    assert "## Gradient-norm penalty during training" in (cmp_dir / "comparison.md").read_text()
    records = [json.loads(line) for line in
               (tmp_path / "smoke" / "lambda-1" / "metrics.jsonl").read_text().splitlines()]
    assert any("safety_grad_penalty/share" in r for r in records)


def _write(tmp_path, result, name):
    folder = tmp_path / name
    folder.mkdir(parents=True)
    result.write_json(folder / EVAL_FILE)
    return folder


def test_experts_check_passes_a_more_unsafe_toxic_expert_and_warns_otherwise(tmp_path, capsys):
    clean = _write(tmp_path, fake_eval("clean expert", "BAD", {1}), "clean")
    toxic = _write(tmp_path, fake_eval("toxic expert", "BAD", set(range(10))), "toxic")
    same = _write(tmp_path, fake_eval("toxic expert", "BAD", {1}), "same")
    assert L.run_experts_check([(clean, toxic)], tmp_path / "cmp") == []
    assert "| yes |" in (tmp_path / "cmp" / L.CHECK_FILE).read_text()
    assert not toxic.exists()  # the toxic expert's replies are gone once counted
    warnings = L.run_experts_check([(clean, same)], tmp_path / "cmp2")
    assert len(warnings) == 1 and "BAD" in warnings[0]
    assert "| NO |" in (tmp_path / "cmp2" / L.CHECK_FILE).read_text()
