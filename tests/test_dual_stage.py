"""The dual-stage recipe (recipes/prosocial_dual_stage.toml) end to end on the tiny model.

Only sizes are overridden (model, steps, limits, mining and LoRA sizes): the stages, data
sources, terms, scorer, RoT retrieval over the ProsocialDialog bank (real MiniLM embeddings) and
reranker are the recipe's own. Checks: two steps per stage; stage 2 starts from stage 1's saved
weights; RoTs are added to stage-2 examples and reach the prompt; mined negatives are cached and a
resumed run does not sample again (and ends with the same weights); the run summary is written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

import losscraft.generation.decode
from losscraft.data.collate import DialogCollator
from losscraft.plugins.registry import get_registry
from losscraft.recipe import build_recipe, load_recipe
from losscraft.app.summary import print_run_summary
from losscraft.trainer import Trainer

RECIPE = Path(__file__).parent.parent / "recipes" / "prosocial_dual_stage.toml"
STAGES = ("adversarial", "casual")


def _overrides(output_dir) -> list[str]:
    sets = ["model.plugin=tiny", "experts.base.plugin=tiny", "lora.r=2", "lora.alpha=4",
            'lora.target_modules=["q_proj", "v_proj"]',
            f"run.output_dir={output_dir}", "stages.adversarial.checkpoint_every=0",
            "stages.adversarial.data.0.limit=4", "stages.adversarial.data.1.limit=4"]
    for stage in STAGES:
        sets += [f"stages.{stage}.max_steps=2", f"stages.{stage}.batch_size=2",
                 f"stages.{stage}.max_response_tokens=16",
                 f"stages.{stage}.mining.max_examples=2", f"stages.{stage}.mining.num_samples=1",
                 f"stages.{stage}.mining.max_new_tokens=4"]
    # the tiny tokenizer has one token per byte: stage 2 needs room for the RoTs in its prompt
    sets += ["stages.adversarial.max_context_tokens=64", "stages.casual.max_context_tokens=256"]
    sets += [f"stages.casual.data.{i}.limit=2" for i in range(6)]  # replay + five casual
    sets += [f"stages.adversarial.replay.data.{i}.limit=1" for i in range(4)]
    sets += ["stages.adversarial.replay.max_new_tokens=8"]
    # the lexical scorer keeps this test independent of the judges (tested in test_judge.py)
    sets += ["scorer.plugin=profanity_check", 'reranker.scorer="profanity_check"',
             'report.second_scorer={ plugin = "profanity_check" }']
    return sets


class RecordingTrainer(Trainer):
    """Keeps each stage's starting weights and its examples before/after augmentation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial: dict[str, dict[str, torch.Tensor]] = {}
        self.raw_examples: dict[str, list] = {}
        self.examples: dict[str, list] = {}

    def _run_stage(self, index, stage, model, *args, **kwargs):
        self.initial[stage.name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return super()._run_stage(index, stage, model, *args, **kwargs)

    def _augment(self, stage, examples, model):
        self.raw_examples[stage.name] = examples
        self.examples[stage.name] = super()._augment(stage, examples, model)
        return self.examples[stage.name]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    out = tmp_path_factory.mktemp("dual") / "run"
    recipe = load_recipe(RECIPE, _overrides(out))
    trainer = RecordingTrainer(recipe, registry=get_registry(), show_progress=False)
    return recipe, trainer, trainer.run()


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_each_stage_runs_two_steps(straight):
    _, _, result = straight
    records = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    assert [(r["stage"], r["stage_step"]) for r in records] == [
        ("adversarial", 1), ("adversarial", 2), ("casual", 1), ("casual", 2)]
    assert all("socially_aware_npair" in r and "nll" in r for r in records)
    # borrowed + MIC negatives packed (replayed casual rows have none)
    assert any("socially_aware_npair/neg_score" in r for r in records
               if r["stage"] == "adversarial")
    assert set(result.stage_models) == set(STAGES) and result.final_model.is_dir()


def test_stage_two_starts_from_stage_one_weights(straight):
    _, trainer, result = straight
    saved = _weights(result.stage_models["adversarial"])
    start = trainer.initial["casual"]
    assert saved.keys() == start.keys()
    for key in saved:
        assert torch.equal(saved[key], start[key]), key
    base = trainer.initial["adversarial"]
    assert any(not torch.equal(base[k], start[k]) for k in base), "stage 1 changed nothing"


def test_stage_one_replays_casual_contexts_with_the_base_models_replies(straight):
    _, trainer, result = straight
    replayed = [e for e in trainer.examples["adversarial"] if e.meta.get("replayed")]
    cache = result.output_dir / "stages" / "adversarial" / "replay.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()[1:]]
    assert len(rows) == 4  # one context from each of the four replay sources
    assert {e.source for e in replayed} <= {"daily_dialog", "blended_skill_talk", "persona_chat",
                                            "empathetic_dialogues"}
    assert [e.response for e in replayed] == [r["reply"] for r in rows if r["reply"]]


def test_rots_are_retrieved_into_stage_two_prompts(straight):
    recipe, trainer, _ = straight
    raw, augmented = trainer.raw_examples["casual"], trainer.examples["casual"]
    assert len(raw) == 12  # 2 replayed ProsocialDialog rows (gold RoTs) + 2 per casual source
    assert all(not e.rots for e in raw if e.source != "prosocial_dialog")
    with_rots = [e for e in augmented if e.rots]
    assert len(with_rots) >= len(augmented) // 2, [e.rots for e in augmented]
    assert all(len(e.rots) <= 2 for e in augmented)  # rot_generator.max_rots
    bank = {rot for ex in get_registry().create("data_source", "prosocial_dialog",
                                                 {"split": "train"}) for rot in ex.rots}
    assert all(rot in bank for e in augmented for rot in e.rots)
    assert recipe.stage("adversarial").rots is None  # stage 1 keeps its sources' RoTs
    raw_adversarial = trainer.raw_examples["adversarial"]  # replayed rows are appended after
    assert [e.rots for e in trainer.examples["adversarial"][:len(raw_adversarial)]] == \
        [e.rots for e in raw_adversarial]
    stage = recipe.stage("casual")
    collator = DialogCollator(trainer.tokenizer, max_context_tokens=stage.max_context_tokens,
                              rot_placement=stage.rots.placement)
    batch = collator(with_rots[:1])
    prompt = trainer.tokenizer.decode(batch.input_ids[0])
    assert "<|im_start|>system\nRules of thumb: " + with_rots[0].rots[0] in prompt


def test_mined_negatives_are_cached_and_resume_does_not_remine(straight, tmp_path, monkeypatch):
    real = losscraft.generation.decode.generate_responses
    calls = []

    def counting(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(losscraft.generation.decode, "generate_responses", counting)
    recipe = load_recipe(RECIPE, _overrides(tmp_path / "run"))
    first = Trainer(recipe, registry=get_registry(), show_progress=False, stop_after=1).run()
    # stage 1 sampled its 4 replay contexts, then mined its max_examples contexts
    assert first.stopped_early and calls == [4, 2]
    caches = [tmp_path / "run" / "stages" / s / "mined_negatives.jsonl" for s in STAGES]
    assert caches[0].is_file() and not caches[1].exists()
    before = caches[0].read_text()
    # the settings line, then one row per example (8 from the data, 4 replayed)
    assert len(before.splitlines()) == 1 + 12

    second = Trainer(recipe, registry=get_registry(), show_progress=False).run(resume=True)
    assert calls == [4, 2, 2], "the resumed stage sampled again instead of reading its caches"
    assert caches[0].read_text() == before and caches[1].is_file()
    # resuming inside stage 1 ends with the weights of the uninterrupted run
    expected = _weights(straight[2].final_model)
    resumed = _weights(second.final_model)
    assert expected.keys() == resumed.keys()
    for key in expected:
        assert torch.equal(expected[key], resumed[key]), key


def test_run_summary_is_printed_and_written(straight):
    recipe, _, result = straight
    recipe = load_recipe(RECIPE, _overrides(result.output_dir) + [
        "report.num_contexts=2", "report.num_samples=1", "report.max_new_tokens=4",
        "report.examples_shown=1", "report.num_casual_contexts=2",
        "report.casual_examples_shown=1"])
    buffer = io.StringIO()
    record = print_run_summary(build_recipe(recipe, get_registry()), result,
                               console=Console(file=buffer, width=120), show_progress=False)
    assert "before / after" in buffer.getvalue()
    written = json.loads((result.output_dir / "summary.json").read_text())
    assert written == json.loads(json.dumps(record))
    assert written["risky"]["num_contexts"] == 2 and len(written["risky"]["contexts"]) == 2
    assert set(written["risky"]["models"]) == {"base", "final"}
    for model in written["risky"]["models"].values():
        assert model["metrics"]["num_responses"] == 2
        assert 0.0 <= model["metrics"]["toxic_response_rate"] <= 1.0
    risky = [e for e in written["examples"] if e["block"] == "risky"]
    assert len(risky) == 1 and risky[0]["final_rerank"] is not None  # the recipe's reranker ran
    # both stages mine: negatives are counted from their caches
    assert list(written["mining"]) == list(STAGES)
    assert written["mining"]["adversarial"]["sampled"] == 2  # mining.max_examples x num_samples
    markdown = (result.output_dir / "summary.md").read_text()
    assert "| unsafe replies (P(unsafe)>0.5) |" in markdown and "## Mined negatives" in markdown
