"""Self-replay (`losscraft.trainer.prepare.replay`): ``[[stages.replay.data]]`` contexts join a stage with the
starting model's own replies, sampled once and cached per stage."""

from __future__ import annotations

import json

import pytest

from losscraft import RecipeError
from losscraft.trainer.prepare.replay import CACHE_NAME, replay_examples, whole_sentences
from losscraft.recipe import load_recipe, validate_recipe
from losscraft.testing.builders import recipe_toml
from losscraft.trainer import Trainer

#: the stage: 4 toy dialogs plus replies to 3 more contexts, sampled with at most 6 new tokens
STAGE = {"name": "main", "max_steps": 2, "batch_size": 2, "max_context_tokens": 48,
         "max_response_tokens": 12, "data": [{"plugin": "toy_dialogs", "count": 4}],
         "replay": {"max_new_tokens": 6, "data": [{"plugin": "toy_dialogs", "count": 3}]},
         "terms": [{"plugin": "nll"}]}


def _recipe(tmp_path, *overrides, stage=STAGE):
    path = tmp_path / "replay.toml"
    path.write_text(recipe_toml(run={"seed": 1, "output_dir": tmp_path / "run"}, stages=[stage]))
    return load_recipe(path, list(overrides))


@pytest.fixture
def fake_sampler(monkeypatch):
    """History ``h`` gets ``"Noted: <n> words. And then"`` (cut off by the token limit), except a
    last turn containing 'cook', which gets a sample without a complete sentence; records each
    call."""
    calls = []

    def sample(model, tokenizer, histories, *, num_samples=1, progress=None, **kwargs):
        calls.append({"histories": [list(h) for h in histories], **kwargs})
        return [["so I think" if "cook" in h[-1] else f"Noted: {len(h[-1].split())} words. And"]
                 * num_samples
                for h in histories]

    monkeypatch.setattr("losscraft.generation.decode.generate_responses", sample)
    return calls


def _replay(recipe, registry, cache):
    return replay_examples(None, None, recipe, recipe.stages[0], registry, cache,
                           show_progress=False)


def test_replayed_examples_carry_the_models_own_replies(tmp_path, registry, fake_sampler):
    recipe = _recipe(tmp_path, "stages.main.replay.data.0.count=6")
    examples = _replay(recipe, registry, tmp_path / CACHE_NAME)
    assert len(examples) == 6 and len(fake_sampler) == 1
    assert fake_sampler[0]["max_new_tokens"] == 6 and fake_sampler[0]["temperature"] == 0.8
    for ex in examples:
        if "cook" in ex.history[-1]:  # no complete sentence: the data's own reply stays
            assert not ex.response.startswith("Noted") and "replayed" not in ex.meta
        else:  # cut to the last complete sentence
            assert ex.response == f"Noted: {len(ex.history[-1].split())} words."
            assert ex.meta["replayed"]
    lines = (tmp_path / CACHE_NAME).read_text().splitlines()
    assert len(lines) == 7 and "settings" in json.loads(lines[0])


@pytest.mark.parametrize("text, kept", [
    ("I am so proud of", ""),
    ("Great news! They are going to be a big", "Great news!"),
    ('Yes. "Really!" and then', 'Yes. "Really!"'),
    ("That sounds lovely. Where did you go?", "That sounds lovely. Where did you go?"),
    ("  ", ""),
])
def test_samples_are_cut_to_whole_sentences(text, kept):
    assert whole_sentences(text) == kept


def test_the_cache_is_reused_and_a_changed_setting_samples_again(tmp_path, registry,
                                                                 fake_sampler):
    cache = tmp_path / CACHE_NAME
    first = _replay(_recipe(tmp_path), registry, cache)
    again = _replay(_recipe(tmp_path), registry, cache)
    assert [e.response for e in again] == [e.response for e in first] and len(fake_sampler) == 1
    _replay(_recipe(tmp_path, "stages.main.replay.temperature=0.5"), registry, cache)
    assert len(fake_sampler) == 2 and fake_sampler[1]["temperature"] == 0.5


def test_disabled_replay_adds_nothing(tmp_path, registry, fake_sampler):
    recipe = _recipe(tmp_path, "stages.main.replay.enabled=false")
    assert _replay(recipe, registry, tmp_path / CACHE_NAME) == [] and not fake_sampler


@pytest.mark.parametrize("override, key", [
    ("stages.main.replay.temperature=0", "stages.main.replay.temperature"),
    ("stages.main.replay.top_p=1.5", "stages.main.replay.top_p"),
    ("stages.main.replay.max_new_tokens=0", "stages.main.replay.max_new_tokens"),
    ("stages.main.replay.temprature=0.5", "stages.main.replay"),
])
def test_bad_replay_settings_name_their_key(tmp_path, override, key):
    with pytest.raises(RecipeError) as info:
        _recipe(tmp_path, override)
    assert info.value.key.startswith(key)


def test_replay_without_sources_is_an_error(tmp_path):
    stage = {**STAGE, "replay": {"max_new_tokens": 6}}
    with pytest.raises(RecipeError) as info:
        _recipe(tmp_path, stage=stage)
    assert info.value.key == "stages.main.replay.data"


def test_validate_checks_replay_sources(tmp_path, registry):
    recipe = _recipe(tmp_path, 'stages.main.replay.data.0.plugin="toy_dialog"')
    with pytest.raises(RecipeError) as info:
        validate_recipe(recipe, registry)
    assert info.value.key.startswith("stages.main.replay.data[0]")
    assert "toy_dialogs" in str(info.value)


def test_a_stage_trains_on_replayed_replies_end_to_end(tmp_path, registry):
    """The tiny model's real samples: the stage trains on 4 + 3 examples and caches 3 replies."""
    result = Trainer(_recipe(tmp_path), registry=registry, show_progress=False).run()
    cache = result.output_dir / "stages" / "main" / CACHE_NAME
    rows = [json.loads(line) for line in cache.read_text().splitlines()[1:]]
    assert len(rows) == 3 and all(isinstance(r["reply"], str) for r in rows)
