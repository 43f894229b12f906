"""Stage-level example preparation: negative mining (`losscraft.trainer.prepare.mining`) and RoT augmentation
(`losscraft.trainer.prepare.augment`), with a stub scorer and a stub RoT generator registered as a test plugin.

Mining is tested with a fake sampler (exact control over what the "model" says) and once end to
end through the `Trainer` with the tiny model's real samples.
"""

from __future__ import annotations

import json

import pytest

from losscraft import RecipeError, hookimpl
from losscraft.trainer.prepare.augment import add_rots
from losscraft.trainer.prepare.mining import MINED_WEIGHTS, mine_negatives
from losscraft.recipe.instantiate import build_recipe
from losscraft.recipe import load_recipe
from losscraft.testing.builders import recipe_toml
from losscraft.trainer import Trainer
from losscraft.types import SAFETY_LABELS, Example

SCORED: list[list[str]] = []        # responses passed to MarkerScorer.p_unsafe, per call
ROT_CALLS: list[list[list[str]]] = []  # histories passed to EchoRots.generate, per call


class MarkerScorer:
    """P(unsafe) = ``p_flag`` for replies containing ``marker``, else 0.1 (tests).

    Args:
        marker: the text that marks a reply as unsafe ("" flags every reply).
        p_flag: the probability given to marked replies.
    """

    def __init__(self, marker: str = "BAD", p_flag: float = 0.9):
        self.marker, self.p_flag = marker, p_flag

    def p_unsafe(self, contexts, responses):
        SCORED.append(list(responses))
        return [self.p_flag if self.marker in r else 0.1 for r in responses]


class EchoRots:
    """One RoT per history: ``"<prefix>: <last turn>"`` (tests).

    Args:
        prefix: text before the last turn.
    """

    def __init__(self, prefix: str = "rot"):
        self.prefix = prefix

    def generate(self, histories):
        ROT_CALLS.append([list(h) for h in histories])
        return [[f"{self.prefix}: {h[-1]}"] for h in histories]


class _TestPlugin:
    @hookimpl
    def register_scorers(self, register):
        register("marker", MarkerScorer)

    @hookimpl
    def register_rot_generators(self, register):
        register("echo_rots", EchoRots)


@pytest.fixture
def reg(registry):
    registry.add_plugin(_TestPlugin(), "test_mining_augment")
    SCORED.clear()
    ROT_CALLS.clear()
    return registry


#: the stage: mines the first 3 examples' samples, adds RoTs to the system turn
STAGE = {"name": "main", "max_steps": 2, "batch_size": 2, "max_context_tokens": 48,
         "max_response_tokens": 12, "max_negatives": 3,
         "data": [{"plugin": "toy_dialogs", "count": 4}],
         "terms": [{"plugin": "nll"}, {"plugin": "socially_aware_npair"}],
         "mining": {"num_samples": 2, "max_examples": 3, "max_new_tokens": 6, "threshold": 0.5},
         "rots": {"placement": "system"}}


def _recipe(tmp_path, *overrides, rot_generator=True):
    path = tmp_path / "mining.toml"
    path.write_text(recipe_toml(run={"seed": 1, "output_dir": tmp_path / "run"},
                                scorer={"plugin": "marker"},
                                rot_generator={"plugin": "echo_rots"} if rot_generator else None,
                                stages=[STAGE]))
    return load_recipe(path, list(overrides))


def _examples():
    return [
        Example(["i want to hurt him"], "please don't; let's talk.", is_safe=True,
                safety_label="__needs_intervention__", id="e0"),
        Example(["hi"], "hello!", is_safe=True, negatives=["whatever."], id="e1"),
        Example(["what's up"], "not much", safety_label="__casual__",
                negatives=["a", "b"], negative_weights=[0.5], id="e2"),
        Example(["bye"], "see you", id="e3"),
    ]


@pytest.fixture
def fake_sampler(monkeypatch):
    """Replace the sampler: history ``h`` gets ``["BAD <last turn>", "fine"]``; counts calls."""
    calls = []

    def sample(model, tokenizer, histories, *, num_samples=1, progress=None, **kwargs):
        calls.append({"histories": [list(h) for h in histories], "num_samples": num_samples,
                      **kwargs})
        if progress:
            progress(len(histories))
        return [[f"BAD {h[-1]}", "fine", "  "][:num_samples] for h in histories]

    monkeypatch.setattr("losscraft.generation.decode.generate_responses", sample)
    return calls


def _mine(recipe, examples, cache, registry):
    built = build_recipe(recipe, registry).stages[0]
    return mine_negatives(examples, None, None, recipe, recipe.stages[0], built.mining_scorer,
                          cache, show_progress=False)


# ----------------------------------------------------------------------------- mining
def test_severity_grows_with_the_safety_label():
    weights = [MINED_WEIGHTS[label] for label in SAFETY_LABELS]
    assert weights == sorted(weights) and len(set(weights)) == len(weights)
    assert weights[0] == 1.0


def test_flagged_samples_become_weighted_negatives(tmp_path, reg, fake_sampler):
    recipe = _recipe(tmp_path)
    examples = _examples()
    mined = _mine(recipe, examples, tmp_path / "cache.jsonl", reg)
    assert len(fake_sampler) == 1
    call = fake_sampler[0]
    assert call["histories"] == [e.history for e in examples[:3]]  # max_examples = 3
    assert call["num_samples"] == 2 and call["max_new_tokens"] == 6 and call["seed"] == 1
    assert SCORED == [["BAD i want to hurt him", "fine", "BAD hi", "fine", "BAD what's up", "fine"]]

    e0, e1, e2, e3 = mined
    assert e0.negatives == ["BAD i want to hurt him"]
    assert e0.negative_weights == [MINED_WEIGHTS["__needs_intervention__"]] == [2.0]
    assert e1.negatives == ["whatever.", "BAD hi"] and e1.negative_weights == [1.0, 1.0]
    assert e2.negatives == ["a", "b", "BAD what's up"]
    assert e2.negative_weights == [0.5, 1.0, MINED_WEIGHTS["__casual__"]]  # given weight kept, aligned
    assert e3.negatives == [] and e3.negative_weights == []           # beyond max_examples
    assert examples[1].negatives == ["whatever."], "the input examples must not change"
    assert [e.id for e in mined] == [e.id for e in examples]


def test_threshold_is_strict(tmp_path, reg, fake_sampler):
    recipe = _recipe(tmp_path, "scorer.p_flag=0.5")  # flagged replies score exactly 0.5
    mined = _mine(recipe, _examples(), tmp_path / "cache.jsonl", reg)
    assert all(m.negatives == e.negatives for m, e in zip(mined, _examples()))


def test_examples_sharing_an_id_keep_their_own_negatives(tmp_path, reg, fake_sampler):
    examples = [Example(["one"], "r", id="same"), Example(["two"], "r", id="same")]
    mined = _mine(_recipe(tmp_path), examples, tmp_path / "cache.jsonl", reg)
    assert [m.negatives for m in mined] == [["BAD one"], ["BAD two"]]
    again = _mine(_recipe(tmp_path), examples, tmp_path / "cache.jsonl", reg)
    assert len(fake_sampler) == 1 and [m.negatives for m in again] == [["BAD one"], ["BAD two"]]


def test_cache_is_reused_for_the_same_settings_only(tmp_path, reg, fake_sampler):
    cache = tmp_path / "cache.jsonl"
    first = _mine(_recipe(tmp_path), _examples(), cache, reg)
    lines = cache.read_text().splitlines()
    assert "settings" in json.loads(lines[0])
    rows = [json.loads(line) for line in lines[1:]]
    assert [r["id"] for r in rows] == ["e0", "e1", "e2", "e3"]
    assert rows[0]["flagged"] == [{"text": "BAD i want to hurt him", "p_unsafe": 0.9}]

    again = _mine(_recipe(tmp_path), _examples(), cache, reg)
    assert len(fake_sampler) == 1, "same settings must read the cache"
    assert again == first

    changes = {"threshold": ["stages.main.mining.threshold=0.3"],
               "samples": ["stages.main.mining.num_samples=1"],
               "scorer": ["scorer.marker=fine"], "seed": ["run.seed=2"],
               "context": ["stages.main.max_context_tokens=40"], "examples": []}
    for n, (what, overrides) in enumerate(changes.items(), start=2):
        copy = tmp_path / f"cache-{what}.jsonl"  # each change against the first run's cache
        copy.write_text(cache.read_text())
        examples = _examples()[:3] if what == "examples" else _examples()
        changed = _mine(_recipe(tmp_path, *overrides), examples, copy, reg)
        assert len(fake_sampler) == n, f"a changed {what} must invalidate the cache"
        if what == "scorer":
            assert changed[0].negatives == ["fine"]


def test_mining_without_a_scorer_is_a_recipe_error(tmp_path, reg, fake_sampler):
    recipe = _recipe(tmp_path)
    recipe.scorer = None
    with pytest.raises(RecipeError, match="needs a scorer") as info:
        _mine(recipe, _examples(), tmp_path / "cache.jsonl", reg)
    assert info.value.key == "stages.main.mining" and not fake_sampler


def test_trainer_mines_real_samples_into_the_contrastive_batch(tmp_path, reg):
    recipe = _recipe(tmp_path, "scorer.marker=\"\"", "stages.main.mining.max_examples=0")
    result = Trainer(recipe, registry=reg, show_progress=False).run()
    cache = result.output_dir / "stages" / "main" / "mined_negatives.jsonl"
    rows = [json.loads(line) for line in cache.read_text().splitlines()[1:]]
    assert len(rows) == 4 and len(SCORED) == 1 and len(SCORED[0]) > 0
    flagged = [f for r in rows for f in r["flagged"]]
    assert len(flagged) == len(SCORED[0]) and all(f["p_unsafe"] == 0.9 for f in flagged)
    records = [json.loads(line) for line in result.metrics.read_text().splitlines()]
    assert all("socially_aware_npair/neg_score" in r for r in records), "no negatives packed"


# ----------------------------------------------------------------------------- RoTs
def _rot_examples():
    return [Example(["hi", "how do i cheat on a test"], "don't.", rots=["Cheating is wrong."],
                    id="a"),
            Example(["i skipped school"], "why?", id="b"),
            Example(["nice day"], "yes!", id="c")]


def test_add_rots_fills_only_missing(tmp_path, reg):
    recipe = _recipe(tmp_path)
    examples = _rot_examples()
    out = add_rots(examples, recipe.stages[0], build_recipe(recipe, reg).rot_generator)
    assert ROT_CALLS == [[["i skipped school"], ["nice day"]]]
    assert [e.rots for e in out] == [["Cheating is wrong."], ["rot: i skipped school"],
                                     ["rot: nice day"]]
    assert examples[1].rots == [], "the input examples must not change"


def test_add_rots_replaces_all_when_not_only_missing(tmp_path, reg):
    recipe = _recipe(tmp_path, "stages.main.rots.only_missing=false")
    out = add_rots(_rot_examples(), recipe.stages[0], build_recipe(recipe, reg).rot_generator)
    assert len(ROT_CALLS[0]) == 3
    assert out[0].rots == ["rot: how do i cheat on a test"]


def test_add_rots_without_generator_errors_clearly(tmp_path, reg):
    recipe = _recipe(tmp_path, rot_generator=False)
    with pytest.raises(RecipeError, match=r"\[rot_generator\]") as info:
        add_rots(_rot_examples(), recipe.stages[0], None, file=recipe.path)
    assert info.value.key == "stages.main.rots" and info.value.file == recipe.path
    # nothing missing: nothing to generate, so no generator is needed
    complete = [e for e in _rot_examples() if e.rots]
    assert add_rots(complete, recipe.stages[0], None, file=recipe.path) == complete
