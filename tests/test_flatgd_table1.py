"""scripts/flatgd_table1.sh and its helpers (losscraft.app.experiments.flatgd_table1): the risky test
contexts, rescoring with a second scorer, the paper's orderings, the scales' commands, and the
smoke scale end to end on the tiny model (train five models, evaluate, rescore, compare)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from losscraft.errors import DataError
from losscraft.app.experiments import flatgd_table1 as T
from losscraft.app.reports.compare import compare
from losscraft.evaluation.result import EvalResult

from test_bootstrap import fake_eval

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "flatgd_table1.sh"


# ------------------------------------------------------------------------------ contexts
@pytest.mark.parametrize("dataset", ["bad", "prosocial"])
def test_risky_contexts_are_unique_and_at_least_forty(dataset):
    everything = T.risky_contexts(dataset, 0)
    assert len(everything) >= 40
    assert len({tuple(c) for c in everything}) == len(everything)
    chosen = T.risky_contexts(dataset, 40)
    assert len(chosen) == 40 and all(c in everything for c in chosen)
    assert chosen == [everything[i * len(everything) // 40] for i in range(40)]  # evenly spaced
    with pytest.raises(DataError, match="holds"):
        T.risky_contexts(dataset, len(everything) + 1)


def test_bad_risky_contexts_invite_an_unsafe_reply():
    from losscraft.plugins.registry import get_registry

    bot = list(get_registry().create("data_source", "bot_adversarial_dialogue", {"split": "test"}))
    unsafe_replies = {tuple(e.history) for e in bot if e.is_safe is False}
    risky = {tuple(c) for c in T.bad_risky_contexts()}
    assert unsafe_replies <= risky
    assert ("Hey, do you have any pets?",) not in risky  # a friendly opener is not risky
    # the held-back ones Table 1 uses are the last three turns of some of them
    windows = {c[-3:] for c in risky}
    assert all(tuple(c) in windows for c in T.risky_contexts("bad", 0))


# ------------------------------------------------------------------------------ rescore
class LengthScorer:
    """P(unsafe) = 0.9 for replies longer than 14 characters; P(prosocial) = 0.7 always."""

    def p_unsafe(self, contexts, responses):
        assert len(contexts) == len(responses)
        return [0.9 if len(r) > 14 else 0.1 for r in responses]

    def p_prosocial(self, contexts, responses):
        return [0.7] * len(responses)


def test_rescore_recomputes_toxicity_and_keeps_the_samples():
    result = fake_eval("clean", "BAD (fake)", {0, 1}, k=2)
    result.samples[3].responses[1].text = "short"
    new = T.rescore(result, LengthScorer(), scorer_name="length", dataset="BAD (length)")
    assert [r.text for s in new.samples for r in s.responses] == \
        [r.text for s in result.samples for r in s.responses]
    assert result.dataset == "BAD (fake)" and new.dataset == "BAD (length)"
    # every reply but the short one is long: each context has a toxic reply
    assert new.metrics["toxicity_probability"] == 1.0
    assert new.metrics["toxic_response_rate"] == pytest.approx(19 / 20)
    assert new.metrics["prosocial_response_rate"] == 1.0
    assert new.metrics["perplexity"] == result.metrics["perplexity"]
    assert new.settings["scorer"] == "length"
    assert new.settings["rescored_from"] == {"dataset": "BAD (fake)", "scorer": "fake"}
    assert result.metrics["toxicity_probability"] == 0.2  # the original is untouched


def test_rescore_cli_round_trip(tmp_path, monkeypatch):
    from losscraft.plugins.registry import get_registry

    registry = get_registry()
    monkeypatch.setattr(registry, "create", lambda kind, name, params: LengthScorer())
    fake_eval("clean", "BAD (fake)", set(), k=2).write_json(tmp_path / "a" / "eval.json")
    assert T.main(["rescore", str(tmp_path / "a"), "--scorer", "length", "--dataset", "BAD (len)",
                   "--out", str(tmp_path / "b")]) == 0
    new = EvalResult.read_json(tmp_path / "b" / "eval.json")
    assert new.dataset == "BAD (len)" and new.metrics["toxicity_probability"] == 1.0
    assert (tmp_path / "b" / "report.md").is_file()


# ------------------------------------------------------------------------------ the paper
def test_paper_markdown_says_which_orderings_hold(tmp_path):
    toxic = {"clean": {0, 1, 2, 3, 4, 5}, "Unlikelihood": {0, 1, 2, 3, 4, 5},
             "CRINGE": {0, 1, 2, 3, 4, 5, 6, 7}, "Safety_loss": {0}, "FlatGD": {0}}
    paths = []
    for model, hits in toxic.items():
        r = fake_eval(model, "BAD (fake)", hits)
        paths.append(r.write_json(tmp_path / model / "eval.json"))
    compare(paths, out_dir=tmp_path / "cmp", resamples=300)
    text = T.paper_markdown(tmp_path / "cmp")
    rows = {line.split(" | ")[1]: line for line in text.splitlines()
            if line.startswith("| BAD (fake) | ")}
    assert "tie (no difference in any context)" in rows["clean > Unlikelihood"]
    assert "reversed" in rows["clean > CRINGE"]
    assert "holds (McNemar p = 0.0156 over 7 discordant contexts)" in rows["CRINGE > Safety_loss"]
    assert "holds, not significant (McNemar p = 0.0625 over 5" in rows["Unlikelihood > Safety_loss"]
    assert "tie" in rows["Safety_loss > FlatGD"]
    assert "| clean | 0.600 [" in text and "| 0.3392 | 0.3607 |" in text


def test_verdicts_claim_an_ordering_only_on_the_exact_test():
    assert T.verdict(0.2, 0.05, 0.3, 0.01, 9) == \
        "holds (McNemar p = 0.01 over 9 discordant contexts)"
    # the case: an interval that excludes 0 from 4 discordant contexts out of 40
    assert T.verdict(0.1, 0.025, 0.175, 0.125, 4).startswith("holds, not significant")
    assert T.verdict(-0.2, -0.3, -0.1, 0.002, 12).startswith("reversed (McNemar")
    assert T.verdict(0.0, -0.1, 0.1, 1.0, 2) == "tie, not significant"
    assert "no exact test" in T.verdict(0.2, 0.05, 0.3)


# ------------------------------------------------------------------------------ the scales
def _opts(scale: str, tmp_path, **kw) -> T.Options:
    kw.setdefault("models", [r for r, _ in T.MODELS])
    return T.Options(scale=T.SCALES[scale], out=tmp_path / scale, **kw)


def test_default_scale_commands(tmp_path):
    plan = T.build_plan(_opts("default", tmp_path))
    trains = {s.label: s.argv for s in plan if s.kind == "train"}
    assert list(trains) == ["train clean", "train Unlikelihood", "train CRINGE",
                            "train Safety_loss", "train FlatGD"]
    for label, argv in trains.items():
        sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
        # the same LoRA, steps, batch and lr for every policy: a fair comparison
        policy = T.SCALES["default"].policy
        assert "lora.r=16" in sets and f"stages.main.lr={policy['lr']!r}" in sets
        assert f"stages.main.max_steps={policy['max_steps']}" in sets
        assert f"stages.main.batch_size={policy['batch_size']}" in sets
        assert "stages.main.group_by_length=50" in sets  # a third of random batches was padding
        experts = any(s.startswith("stages.toxic_expert.") for s in sets)
        assert experts == (label in ("train Safety_loss", "train FlatGD"))
        penalty = "stages.main.terms.safety.penalty.method=\"finite_difference\"" in sets
        assert penalty == (label == "train FlatGD")
    # the experts are evaluated after Safety_loss trained them, before FlatGD deletes the toxic one
    kinds = [s.kind for s in plan]
    labels = [s.label for s in plan]
    first_expert = kinds.index("expert")
    assert labels[first_expert - 1] == "train Safety_loss"
    assert kinds[first_expert:first_expert + 5] == ["expert"] * 4 + ["experts"]
    assert labels[first_expert + 5] == "train FlatGD"
    for step in plan[first_expert:first_expert + 4]:
        assert step.argv[step.argv.index("--reference") + 1] == "embedded"
        assert "/stages/" in step.argv[1] and step.argv[1].endswith("_expert/model")
    assert "lora.init_b_std=0.001" in trains["train clean"]
    evals = [s.argv for s in plan if s.kind == "eval"]
    assert len(evals) == 10
    for argv in evals:
        assert argv[argv.index("--k") + 1] == "5"
        assert argv[argv.index("--scorer") + 1] == "safety_judge"
        assert argv[argv.index("--batch-size") + 1] == "40"  # k = 5 replies of 8 contexts
    assert any(s.kind == "rescore" and "profanity_check" in s.label for s in plan)
    compare_argv = next(s.argv for s in plan if s.kind == "compare")
    assert len([a for a in compare_argv if "/eval/" in a]) == 20
    assert T.SCALES["default"].contexts >= 40 and T.SCALES["paper"].contexts == 0


def test_overrides_and_paper_scale(tmp_path):
    opts = _opts("paper", tmp_path, models=["flatgd"], steps=3, expert_steps=2,
                 extra_sets=["run.seed=1"], second_scorer="none")
    sets = T.train_overrides(opts, "flatgd")
    assert sets == [f"run.output_dir={tmp_path / 'paper' / 'flatgd'}", "run.seed=0",
                    "stages.main.max_steps=3",
                    "stages.clean_expert.max_steps=2", "stages.toxic_expert.max_steps=2",
                    "run.seed=1"]
    plan = T.build_plan(opts)
    assert not any(s.kind == "rescore" for s in plan)
    with pytest.raises(Exception, match="unknown model"):
        T.build_plan(_opts("smoke", tmp_path, models=["nope"]))


def test_several_seeds_train_and_sample_each_model_once_per_run(tmp_path):
    opts = _opts("default", tmp_path, seeds=[0, 1], generation_seeds=[0, 1])
    plan = T.build_plan(opts)
    trains = [s for s in plan if s.kind == "train"]
    assert len(trains) == 10 and trains[5].label == "train clean (seed 1)"
    sets = [trains[5].argv[i + 1] for i, a in enumerate(trains[5].argv) if a == "--set"]
    assert f"run.output_dir={tmp_path / 'default' / 'seed-1' / 'clean'}" in sets
    assert "run.seed=1" in sets
    evals = [s.argv for s in plan if s.kind == "eval"]
    assert len(evals) == 5 * 2 * 4  # models × test sets × (training seed, generation seed)
    outs = {a[a.index("--out") + 1] for a in evals}
    assert len(outs) == len(evals)
    assert {(a[1].split("/")[-2], a[a.index("--seed") + 1]) for a in evals} == {
        (f"seed-{t}", str(g)) for t in (0, 1) for g in (0, 1)}
    compare_argv = next(s.argv for s in plan if s.kind == "compare")
    assert len([a for a in compare_argv if "/eval/" in a]) == 20  # the first run only
    assert all("/seed-0/" in a and not a.endswith("-g1") for a in compare_argv if "/eval/" in a)
    assert [s.kind for s in plan][-2:] == ["pool", "paper"]
    # one seed keeps the old layout and no pooling
    single = T.build_plan(_opts("default", tmp_path, seeds=[3]))
    assert not any(s.kind == "pool" for s in single)
    assert any(f"run.output_dir={tmp_path / 'default' / 'clean'}" in s.argv
               for s in single if s.kind == "train")
    with pytest.raises(SystemExit):
        T.main(["table1", "--seeds", "0,0", "--dry-run"])


def test_toml_values_and_tags():
    assert T.toml_value(["a", "b"]) == '["a", "b"]'
    assert T.toml_value(True) == "true" and T.toml_value(2e-4) == "0.0002"
    assert T.scorer_tag("profanity_check", {"include_context": True}) == \
        "profanity_check[include_context=true]"


def test_script_dry_run(tmp_path):
    env = {**os.environ, "PY": sys.executable, "OUT": str(tmp_path / "t"), "MODELS": "clean",
           "DRY_RUN": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(SCRIPT), "--scale", "smoke"], env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "scale 'smoke'" in done.stdout
    assert "losscraft run " in done.stdout and "model.plugin=\"tiny\"" in done.stdout
    assert "losscraft compare " in done.stdout
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------------------ end to end
def test_smoke_scale_end_to_end(tmp_path, capsys):
    """The whole table on the tiny model: five trainings (FlatGD with its experts and the
    finite-difference penalty), ten evaluations, rescoring, compare with intervals, the paper's
    orderings."""
    opts = _opts("smoke", tmp_path)
    record = T.run_table1(opts)
    out = capsys.readouterr().out
    assert "total wall time:" in out and "Table 1 with 95% bootstrap intervals:" in out
    cmp_dir = tmp_path / "smoke" / "comparison"
    assert record["table"] == str(cmp_dir / "comparison.md")
    md = (cmp_dir / "comparison.md").read_text()
    for label in ("clean", "Unlikelihood", "CRINGE", "Safety_loss", "FlatGD"):
        assert f"| {label} | " in md
    header = (cmp_dir / "table1_toxicity.csv").read_text().splitlines()[0]
    assert header == ("model,BAD (profanity_check),ProsocialDialog (profanity_check),"
                      "BAD (profanity_check[include_context=true]),"
                      "ProsocialDialog (profanity_check[include_context=true])")
    rows = list(csv.DictReader((cmp_dir / "table1_ci.csv").open()))
    assert len(rows) == 20 and all(r["ci_low"] != "" and r["n_contexts"] == "6" for r in rows)
    assert len(list(csv.DictReader((cmp_dir / "table1_paired.csv").open()))) == 4 * 10
    assert "## The paper's orderings" in (cmp_dir / "table1_vs_paper.md").read_text()
    timings = json.loads((tmp_path / "smoke" / "timings.json").read_text())
    assert set(timings["by_kind"]) >= {"train", "eval", "rescore", "compare"}
    # the tiny clean model is the perplexity reference: trade-offs are computed
    assert "no trade-off vs fluency" not in md
    # FlatGD trained on Safety_loss's experts, and the toxic one is gone once it had
    assert not (tmp_path / "smoke" / "flatgd" / "stages" / "clean_expert").exists()
    assert not (tmp_path / "smoke" / "safety_loss" / "stages" / "toxic_expert" / "model").exists()
    assert (tmp_path / "smoke" / "safety_loss" / "stages" / "clean_expert" / "model").is_dir()
    # the experts checked (the tiny ones are equally safe: the warning fires) and reported
    assert "warning: the toxic expert is not measurably more unsafe" in out
    assert "## The experts, checked" in (cmp_dir / "table1_vs_paper.md").read_text()
    assert not list((tmp_path / "smoke" / "experts" / "toxic_expert").rglob("eval.json"))


def test_smoke_scale_pools_several_seeds(tmp_path, capsys):
    """Two training seeds × two sampling seeds of two models: four evaluations per model and
    test set, pooled, and the paper's orderings decided by the permutation test."""
    opts = _opts("smoke", tmp_path, models=["clean", "safety_loss"], seeds=[0, 1],
                 generation_seeds=[0, 1])
    T.run_table1(opts)
    cmp_dir = tmp_path / "smoke" / "comparison"
    cells = list(csv.DictReader((cmp_dir / "table1_seeds.csv").open()))
    assert len(cells) == 2 * 2 * 2  # test sets × scorers × models
    assert all(r["runs"] == "4" and len(json.loads(r["by_run"])) == 4 for r in cells)
    for r in cells:
        by_run = json.loads(r["by_run"])
        assert float(r["value"]) == pytest.approx(sum(by_run.values()) / 4, abs=1e-6)
    paired = list(csv.DictReader((cmp_dir / "table1_seeds_paired.csv").open()))
    assert len(paired) == 4 and all(0.0 < float(r["permutation_p"]) <= 1.0 for r in paired)
    text = (cmp_dir / "table1_vs_paper.md").read_text()
    assert "pooled over 4 runs per model" in text and "permutation test" in text
    assert (tmp_path / "smoke" / "seed-1" / "safety_loss" / "final").is_dir()


@pytest.mark.parametrize("scale", ["default", "paper"])
def test_scale_overrides_give_valid_recipes(scale, tmp_path):
    """Every training command of the scale names stages, terms and data that the recipes have
    (a renamed stage or term would otherwise only fail an hour into the run)."""
    from losscraft.recipe import load_recipe, validate_recipe

    opts = _opts(scale, tmp_path)
    for stage in T.EXPERT_STAGES:  # what Safety_loss leaves for FlatGD to read
        opts.expert_dir(stage, 0).mkdir(parents=True)
    for recipe, _ in T.MODELS:
        parsed = load_recipe(opts.recipes / f"{recipe}.toml", T.train_overrides(opts, recipe))
        validate_recipe(parsed)
        if recipe == "flatgd":  # Safety_loss's experts, no expert stage of its own
            assert [s.name for s in parsed.stages] == ["main"]
            assert {n: e.params["path"] for n, e in parsed.experts.items()} == {
                "clean": str(opts.expert_dir("clean_expert", 0)),
                "toxic": str(opts.expert_dir("toxic_expert", 0))}
            parsed = load_recipe(opts.recipes / f"{recipe}.toml", T.train_overrides(
                _opts(scale, tmp_path, separate_experts=True), recipe))
            validate_recipe(parsed)
        main = parsed.stage("main")
        if scale == "default":
            assert parsed.lora is not None and parsed.lora.r == 16
            assert main.max_steps == T.SCALES["default"].policy["max_steps"]
        else:
            assert parsed.lora is None and main.max_steps == 0
        if recipe == "flatgd":
            penalty = next(t.penalty for t in main.terms if t.penalty is not None)
            assert penalty.method == ("finite_difference" if scale == "default" else "exact")
        if recipe in T.WITH_EXPERTS and scale == "default":
            toxic = parsed.stage("toxic_expert")
            assert [d.limit for d in toxic.data if d.plugin == "prosocial_dialog"] == [1]


def test_flatgd_reads_the_experts_safety_loss_trained_and_their_toxic_one_is_then_deleted(
        tmp_path):
    opts = _opts("default", tmp_path, models=["flatgd", "clean", "safety_loss"], seeds=[0, 1])
    plan = T.build_plan(opts)
    trains = [s.label for s in plan if s.kind == "train"]
    assert trains == [f"train {m} (seed {s})" for s in (0, 1)
                      for m in ("Safety_loss", "FlatGD", "clean")]  # Safety_loss first
    safety = T.train_overrides(opts, "safety_loss", 1)
    assert "stages.toxic_expert.keep_model=true" in safety
    flatgd = T.train_overrides(opts, "flatgd", 1)
    assert "stages.clean_expert.enabled=false" in flatgd
    toxic = opts.expert_dir("toxic_expert", 1)
    assert toxic == tmp_path / "default" / "seed-1" / "safety_loss" / "stages" / "toxic_expert" \
        / "model"
    assert f'experts.toxic={{ plugin = "hf", path = "{toxic}" }}' in flatgd
    step = next(s for s in plan if s.label == "train FlatGD (seed 1)")
    toxic.mkdir(parents=True)
    (toxic / "model.safetensors").write_text("weights")
    step.after()
    assert not toxic.exists() and toxic.parent.is_dir()
    # --separate-experts, or only one of the two models: every recipe trains its own experts
    for alone in (_opts("default", tmp_path, separate_experts=True),
                  _opts("default", tmp_path, models=["flatgd"])):
        sets = T.train_overrides(alone, "flatgd")
        assert not any("enabled=false" in v or v.startswith("experts.") for v in sets)
        assert all(s.after is None for s in T.build_plan(alone))


def test_reuse_retrains_safety_loss_when_flatgd_still_needs_its_deleted_toxic_expert(tmp_path):
    opts = _opts("default", tmp_path, models=["safety_loss", "flatgd"], reuse=True)
    (opts.run_dir("safety_loss", 0) / "final").mkdir(parents=True)
    train = {s.label: s for s in T.build_plan(opts) if s.kind == "train"}
    assert not train["train Safety_loss"].reused  # its toxic expert is gone
    (opts.run_dir("flatgd", 0) / "final").mkdir(parents=True)
    train = {s.label: s for s in T.build_plan(opts) if s.kind == "train"}
    assert train["train Safety_loss"].reused and train["train FlatGD"].reused


def test_the_toxic_expert_is_deleted_even_when_flatgd_fails(tmp_path, monkeypatch, capsys):
    opts = _opts("default", tmp_path, models=["flatgd"], in_process=True)
    toxic = tmp_path / "toxic"
    toxic.mkdir()
    monkeypatch.setattr(T, "build_plan", lambda o: [T.Step(
        "train", "train FlatGD", fn=lambda: 1 / 0, after=lambda: T._drop_toxic_expert(toxic),
        after_label="delete it")])
    with pytest.raises(ZeroDivisionError):
        T.run_table1(opts)
    assert not toxic.exists() and "then: delete it" in capsys.readouterr().out


# ------------------------------------------------------------------------------ side by side
FAKE_LOSSCRAFT = """
import json, os, sys, time
out = os.environ["FAKE_OUT"]
name = sys.argv[-1]
start = time.time()
time.sleep(0.6)
with open(os.path.join(out, name + ".json"), "w") as f:
    json.dump({"start": start, "end": time.time(), "threads": os.environ["OMP_NUM_THREADS"],
               "argv": sys.argv[1:]}, f)
print("done", name)
sys.exit(3 if name.startswith("fail") else 0)
"""


def _fake_launcher(tmp_path, monkeypatch):
    script = tmp_path / "fake_losscraft.py"
    script.write_text(FAKE_LOSSCRAFT)
    monkeypatch.setenv("LOSSCRAFT", f"{sys.executable} {script}")
    monkeypatch.setenv("FAKE_OUT", str(tmp_path))


def test_consecutive_evaluations_are_grouped_and_nothing_else():
    steps = [T.Step("train", "t1", ["run"]), T.Step("eval", "e1", ["eval"]),
             T.Step("eval", "e2", ["eval"]), T.Step("rescore", "r", fn=lambda: None),
             T.Step("eval", "e3", ["eval"])]
    groups = T._groups(steps, 2)
    assert [(together, [s.label for s in g]) for together, g in groups] == [
        (False, ["t1"]), (True, ["e1", "e2"]), (False, ["r"]), (True, ["e3"])]
    assert all(not together for together, _ in T._groups(steps, 1))


def test_side_by_side_commands_overlap_share_the_cores_and_log(tmp_path, monkeypatch):
    _fake_launcher(tmp_path, monkeypatch)
    monkeypatch.setattr(T.os, "cpu_count", lambda: 4)
    steps = [T.Step("eval", f"eval {n}", ["eval", f"job{n}"]) for n in range(4)]
    timings = T._run_side_by_side(steps, 2, tmp_path / "logs")
    assert [t["step"] for t in timings] == [s.label for s in steps]
    runs = [json.loads((tmp_path / f"job{n}.json").read_text()) for n in range(4)]
    assert {r["threads"] for r in runs} == {"2"}
    # two at a time: the first two overlap, and no more than two ever run at once
    assert max(runs[0]["start"], runs[1]["start"]) < min(runs[0]["end"], runs[1]["end"])
    for r in runs:
        running = sum(o["start"] < r["end"] and r["start"] < o["end"] for o in runs)
        assert running <= 2
    assert "done job0" in (tmp_path / "logs" / "eval_0.log").read_text()


def test_a_failed_side_by_side_command_names_its_log_after_the_rest_ran(tmp_path, monkeypatch):
    _fake_launcher(tmp_path, monkeypatch)
    steps = [T.Step("eval", "eval a", ["eval", "fail_a"]),
             T.Step("eval", "eval b", ["eval", "ok_b"])]
    with pytest.raises(T.LosscraftError, match=r"exit status 3.*its output: .*eval_a\.log"):
        T._run_side_by_side(steps, 2, tmp_path / "logs")
    assert (tmp_path / "ok_b.json").is_file()


def test_jobs_below_one_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        T.main(["table1", "--scale", "smoke", "--jobs", "0", "--dry-run"])
    assert "--jobs: expected 1 or more, got 0" in capsys.readouterr().err
