"""What the project measures on shares nothing with what anything trains on.

- every held-back set (the run summary's risky and casual blocks and their development twins,
  Table 1's BAD and ProsocialDialog test contexts) against every training, replay, mining and RoT row of every
  shipped recipe and every judge-corpus row: no identical history, no shared turn, no
  near-paraphrase (MiniLM cosine >= 0.8);
- the judge corpus against the policy's rows (no shared reply, no near user turn or reply), the
  probe against the judge corpus (cosine < 0.7), and the two judge pools against each other;
- the judge corpus's one split per situation, its size and its style controls.

The checks read the data as it is now (not the builders' records), so editing a sample or a
recipe that breaks disjointness fails here.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from importlib import resources
from pathlib import Path

import pytest

from losscraft.evaluation.overlap import context_overlaps, near_pairs, normalise, shared_texts
from losscraft.evaluation.training_rows import Texts, judge_corpus_texts, recipes_texts
from losscraft.judge.probe import load_probe
from losscraft.judge.surface import words

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = Path(str(resources.files("losscraft_plugins.data.samples")))
POOLS = ("primary", "second")
SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def registry():
    from losscraft.plugins.registry import get_registry

    return get_registry()


@pytest.fixture(scope="module")
def policy(registry) -> Texts:
    return recipes_texts(ROOT / "recipes", registry)


def corpus_pairs(pool: str) -> list[dict]:
    path = SAMPLES / "judge" / pool / "pairs.jsonl"
    return [json.loads(s) for s in path.read_text("utf-8").splitlines() if s.strip()]


@pytest.fixture(scope="module")
def judge(registry) -> Texts:
    return judge_corpus_texts(registry, POOLS)


@pytest.fixture(scope="module")
def everything(policy, judge) -> Texts:
    texts = Texts()
    texts.update(policy)
    texts.update(judge)
    return texts


def held_back(registry, block: str) -> list[list[str]]:
    return [ex.history for ex in registry.create("data_source", "held_back", {"block": block})]


@pytest.mark.parametrize("block, minimum", [("risky", 60), ("casual", 60), ("risky_dev", 30),
                                            ("casual_dev", 60)])
def test_summary_blocks_share_nothing_with_training_or_the_judge(registry, everything, block,
                                                                 minimum):
    contexts = held_back(registry, block)
    assert len(contexts) >= minimum
    assert len({tuple(c) for c in contexts}) == len(contexts)
    assert context_overlaps(contexts, everything) == {}


@pytest.mark.parametrize("dev, test", [("risky_dev", "risky"), ("casual_dev", "casual")])
def test_development_blocks_share_no_turn_with_the_blocks_they_stand_in_for(registry, dev, test):
    tuning = held_back(registry, dev)
    reported = held_back(registry, test)
    assert not {tuple(c) for c in tuning} & {tuple(c) for c in reported}
    assert not shared_texts([t for c in tuning for t in c], [t for c in reported for t in c],
                            min_words=4)


def test_casual_block_mixes_real_conversations_with_held_back_templates(registry):
    sources = Counter(ex.meta["from"] for ex in registry.create("data_source", "held_back",
                                                                 {"block": "casual"}))
    assert sources["chitchat"] >= 40
    assert sources["daily_dialog"] + sources["empathetic_dialogues"] >= 1


@pytest.mark.parametrize("dataset", ["bad", "prosocial"])
def test_table1_test_contexts_share_nothing_with_training_or_the_judge(everything, dataset):
    from losscraft.app.experiments.flatgd_table1 import risky_contexts

    contexts = risky_contexts(dataset, 0)
    assert len(contexts) >= 40
    found = context_overlaps(contexts, everything)
    assert found == {}, [f"{contexts[i]}: {why}" for i, why in list(found.items())[:5]]


def test_the_check_finds_a_paraphrase_and_a_shared_turn(policy):
    turn = sorted(policy.turns)[0]
    reply = sorted(policy.replies)[0]
    found = context_overlaps([[turn.upper() + "!"], ["What a lovely day it is."],
                              [reply.replace(".", "")]], policy)
    assert set(found) == {0, 2}


def test_judge_corpus_shares_no_reply_and_no_situation_with_the_policy(policy):
    for pool in POOLS:
        pairs = corpus_pairs(pool)
        assert not shared_texts([p["reply"] for p in pairs], policy.all_texts)
        user_turns = {p["context"][-1] for p in pairs}
        assert not shared_texts(user_turns, policy.all_texts)
        assert near_pairs(sorted(user_turns), sorted(policy.all_texts), 0.8) == []
        assert near_pairs(sorted({p["reply"] for p in pairs}), sorted(policy.all_texts), 0.8) == []


def test_the_two_judge_pools_share_no_row():
    first, second = corpus_pairs("primary"), corpus_pairs("second")
    assert not shared_texts([p["reply"] for p in first], [p["reply"] for p in second])
    assert not shared_texts([p["context"][-1] for p in first],
                            [p["context"][-1] for p in second])
    assert not {p["writer"] for p in first} & {p["writer"] for p in second}


def test_probe_is_far_from_both_judge_pools():
    probe = load_probe()
    corpus = [t for pool in POOLS for p in corpus_pairs(pool) for t in p["context"] + [p["reply"]]]
    texts = sorted({t for p in probe for t in p.context} | {p.reply for p in probe})
    assert near_pairs(texts, sorted(set(corpus)), 0.7) == []


def test_judge_corpus_size_split_and_style_controls():
    pairs = corpus_pairs("primary")
    assert len(pairs) >= 3000
    assert len({p["situation"] for p in pairs}) >= 800
    assert len({p["category"] for p in pairs} - {"casual"}) >= 9
    split_of = defaultdict(set)
    for p in pairs:
        split_of[p["situation"]].add(p["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert len({normalise(p["reply"]) for p in pairs}) == len(pairs)
    for kind in ("condone", "guide", "ignore", "friendly", "insult"):
        lengths = [words(p["reply"]) for p in pairs if p["kind"] == kind]
        assert sum(n <= 12 for n in lengths) >= 0.25 * len(lengths), kind
        assert sum(n >= 30 for n in lengths) >= 0.25 * len(lengths), kind
        asks = sum("?" in p["reply"] for p in pairs if p["kind"] == kind)
        assert 0.1 * len(lengths) <= asks <= 0.6 * len(lengths), kind


def test_judge_corpus_schemas_agree_with_the_pairs(registry):
    for pool in POOLS:
        pairs = corpus_pairs(pool)
        for split in SPLITS:
            rows = list(registry.create("data_source", "judge_corpus",
                                        {"pool": pool, "split": split}))
            want = [p for p in pairs if p["split"] == split]
            assert len(rows) == len(want)
            assert Counter(not ex.is_safe for ex in rows) == Counter(p["unsafe"] for p in want)
            known = [ex for ex in rows if ex.is_prosocial is not None and ex.is_safe]
            assert all(ex.source == f"judge_corpus:mic" for ex in known)


def test_probe_v2_size_and_hard_cases():
    probe = load_probe()
    assert len(probe) >= 400
    kinds = Counter(p.kind for p in probe)
    traps = Counter(p.trap for p in probe if p.trap)
    assert min(kinds.values()) >= 40 and len(kinds) == 5
    assert set(traps) == {"long_condone", "short_guide", "polite_harm", "ramble",
                          "alarming_safe", "blatant_insult", "profane_friendly", "small_model"}
    assert min(traps.values()) >= 15
