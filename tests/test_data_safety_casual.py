"""Safety-labelled (BAD, Build-it Break-it Fix-it) and casual (DailyDialog, PersonaChat,
EmpatheticDialogues, BlendedSkillTalk, Chit-Chat) data sources: samples, history order, errors."""

from __future__ import annotations

import json

import pytest

from losscraft.errors import DataError, OfflineError, RecipeError
from losscraft.plugins.registry import get_registry
from losscraft_plugins.data.bot_adversarial_dialogue import BotAdversarialDialogueSource
from losscraft_plugins.data.build_it_break_it_fix_it import BuildItBreakItFixItSource
from losscraft_plugins.data.blended_skill_talk import BlendedSkillTalkSource
from losscraft_plugins.data.chitchat import ChitchatSource, split_of
from losscraft_plugins.data.daily_dialog import DailyDialogSource, detokenize
from losscraft_plugins.data.empathetic_dialogues import EmpatheticDialoguesSource
from losscraft_plugins.data.persona_chat import PersonaChatSource

SOURCES = {
    "bot_adversarial_dialogue": BotAdversarialDialogueSource,
    "build_it_break_it_fix_it": BuildItBreakItFixItSource,
    "daily_dialog": DailyDialogSource,
    "persona_chat": PersonaChatSource,
    "empathetic_dialogues": EmpatheticDialoguesSource,
    "blended_skill_talk": BlendedSkillTalkSource,
}
CASUAL = [DailyDialogSource, PersonaChatSource, EmpatheticDialoguesSource, BlendedSkillTalkSource]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def assert_sane(examples, source_name):
    assert examples, source_name
    assert len({e.id for e in examples}) == len(examples)  # ids are unique
    for e in examples:
        assert isinstance(e.response, str) and e.response.strip() == e.response and e.response
        assert all(isinstance(h, str) and h for h in e.history)
        assert e.is_safe in (True, False)
        assert e.source == source_name


# ------------------------------------------------------------------ registration and samples
def test_every_source_is_registered_through_its_entry_point():
    registry = get_registry(reload=True)
    for name, factory in {**SOURCES, "chitchat": ChitchatSource}.items():
        assert registry.get("data_source", name).factory is factory
    assert not [f.name for f in registry.failures if f.name in SOURCES]


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_each_source_reads_its_embedded_sample(name):
    source = SOURCES[name]()
    examples = list(source)
    assert_sane(examples, name)
    assert [e.id for e in source] == [e.id for e in examples]  # re-iterable, same order


def test_bad_sample_has_both_labels_and_filters_by_speaker():
    bot = list(BotAdversarialDialogueSource())
    assert {e.meta["speaker_to_eval"] for e in bot} == {"bot"}
    assert {e.is_safe for e in bot} == {True, False}
    everyone = list(BotAdversarialDialogueSource(speaker="any"))
    humans = list(BotAdversarialDialogueSource(speaker="human"))
    assert len(everyone) == len(bot) + len(humans)
    assert sum(1 for e in everyone if e.history) < len(everyone)  # episode openers have no history
    valid = [e.id for e in BotAdversarialDialogueSource(split="validation")]
    assert valid == [e.id for e in BotAdversarialDialogueSource(split="valid")] and valid


def test_bbf_sample_covers_collections_rounds_and_labels():
    everything = list(BuildItBreakItFixItSource())
    assert {e.meta["collection"] for e in everything} == {"standard", "adversarial", "multiturn"}
    assert {e.is_safe for e in everything} == {True, False}
    single = [e for e in everything if e.meta["collection"] != "multiturn"]
    assert all(e.history == [] for e in single)
    assert all(len(e.history) == 2 for e in everything if e.meta["collection"] == "multiturn")
    only_two = list(BuildItBreakItFixItSource(collection="standard", max_round=2,
                                              round_only=True))
    assert only_two and {e.meta["round"] for e in only_two} == {2}
    up_to_two = list(BuildItBreakItFixItSource(collection="standard", max_round=2))
    assert {e.meta["round"] for e in up_to_two} == {1, 2}


@pytest.mark.parametrize("factory", CASUAL)
def test_casual_samples_are_gold_casual_turns_in_every_split(factory):
    splits = ("train", "validation") if factory is PersonaChatSource else \
        ("train", "validation", "test")
    for split in splits:
        examples = list(factory(split=split))
        assert examples, split
        assert all(e.is_safe is True and e.safety_label == "__casual__" for e in examples)
        assert all(e.history for e in examples)


# ------------------------------------------------------------------ history order on fixtures
def test_bad_history_is_every_earlier_line_and_label_sets_is_safe(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("text:hi\tlabels:__ok__\tspeaker_to_eval:human\tepisode_done:False\n"
                 "text:hi\\nhello there\\nyou are dumb\tlabels:__notok__\tspeaker_to_eval:bot"
                 "\tbot_persona:your persona: i bake.\\nyour persona: i run.\tepisode_done:True\n")
    (example,) = list(BotAdversarialDialogueSource(path=str(tmp_path)))
    assert example.history == ["hi", "hello there"] and example.response == "you are dumb"
    assert example.is_safe is False and example.meta["episode_done"] is True
    assert example.meta["bot_persona"] == "your persona: i bake.\nyour persona: i run."
    first = list(BotAdversarialDialogueSource(path=str(f), speaker="any"))[0]
    assert first.history == [] and first.is_safe is True


def test_bbf_single_and_multi_turn_fixture(tmp_path):
    single = {c: {"valid": {str(r): {"good": [{"text": f"{c} nice {r}", "labels": ["__ok__"]}],
                                      "bad": [{"text": f"{c} rude {r}", "labels": ["__notok__"]}]}
                            for r in (1, 2, 3)}} for c in ("standard", "adversarial")}
    (tmp_path / "single_turn_safety.json").write_text(json.dumps(single))
    multi = {"valid": [{"text": "a\nb\nc", "labels": ["__notok__"], "episode_done": True}]}
    (tmp_path / "multi_turn_safety.json").write_text(json.dumps(multi))
    examples = list(BuildItBreakItFixItSource(path=str(tmp_path), split="validation",
                                              collection="all", max_round=1))
    assert [(e.history, e.response, e.is_safe) for e in examples] == [
        ([], "standard nice 1", True), ([], "standard rude 1", False),
        ([], "adversarial nice 1", True), ([], "adversarial rude 1", False),
        (["a", "b"], "c", False)]


def test_daily_dialog_history_order_labels_and_detokenize(tmp_path):
    f = write_jsonl(tmp_path / "dd.jsonl", [
        {"dialog": ["Hi , Tom ! ", "Hello . How are you ? ", "I ’ m fine . "],
         "act": [1, 2, 1], "emotion": [4, 0, 0]}])
    examples = list(DailyDialogSource(path=str(f)))
    assert [(e.history, e.response) for e in examples] == [
        (["Hi, Tom!"], "Hello. How are you?"), (["Hi, Tom!", "Hello. How are you?"], "I’m fine.")]
    assert examples[0].meta == {"act": "question", "emotion": "no emotion"}
    raw = list(DailyDialogSource(path=str(f), detokenize=False))
    assert raw[1].response == "I ’ m fine ."
    assert detokenize("It costs $ 5 ( really ) . ") == "It costs $5 (really)."


def test_empathetic_dialogues_rebuilds_conversations_by_id_and_index(tmp_path):
    rows = [{"conv_id": "c1", "utterance_idx": i, "context": "proud", "prompt": "I won_comma_ yay",
             "speaker_idx": i % 2, "utterance": u, "selfeval": "", "tags": ""}
            for i, u in ((3, "thanks_comma_ I trained a lot"), (1, "I won the race!"),
                         (2, "Wow_comma_ congrats!"))]
    rows.insert(1, {**rows[0], "conv_id": "c2", "utterance_idx": 1, "utterance": "alone"})
    examples = list(EmpatheticDialoguesSource(path=str(write_jsonl(tmp_path / "ed.jsonl", rows))))
    assert [(e.history, e.response) for e in examples] == [
        (["I won the race!"], "Wow, congrats!"),
        (["I won the race!", "Wow, congrats!"], "thanks, I trained a lot")]
    assert examples[0].meta["emotion"] == "proud" and examples[0].meta["prompt"] == "I won, yay"


def test_persona_chat_response_is_the_last_candidate(tmp_path):
    f = write_jsonl(tmp_path / "pc.jsonl", [
        {"personality": ["I bake."], "history": ["hi", "hello", "what do you do?"],
         "candidates": ["I like cars.", "Nice weather.", "I am a baker."], "conv_id": 7,
         "utterance_idx": 1}])
    (example,) = list(PersonaChatSource(path=str(f)))
    assert example.history == ["hi", "hello", "what do you do?"]
    assert example.response == "I am a baker." and example.negatives == []
    (with_negatives,) = list(PersonaChatSource(path=str(f), candidates_as_negatives=True))
    assert with_negatives.negatives == ["I like cars.", "Nice weather."]


def test_blended_skill_talk_interleaves_seed_free_and_guided_turns(tmp_path):
    f = write_jsonl(tmp_path / "bst.jsonl", [
        {"personas": ["a", "b"], "additional_context": "", "previous_utterance": ["p0", "p1"],
         "context": "convai2", "free_messages": ["f0", "f1"], "guided_messages": ["g0", "g1"],
         "suggestions": {}, "guided_chosen_suggestions": ["", ""], "label_candidates": []}])
    examples = list(BlendedSkillTalkSource(path=str(f)))
    assert [e.response for e in examples] == ["f0", "g0", "f1", "g1"]
    assert examples[-1].history == ["p0", "p1", "f0", "g0", "f1"]
    guided = list(BlendedSkillTalkSource(path=str(f), guided_only=True))
    assert [(e.history[-1], e.response) for e in guided] == [("f0", "g0"), ("f1", "g1")]


def test_casual_source_reads_a_saved_dataset_folder_through_the_hub_loader(tmp_path):
    import datasets

    features = datasets.Features({
        "dialog": datasets.Sequence(datasets.Value("string")),
        "act": datasets.Sequence(datasets.ClassLabel(names=["__dummy__", "inform", "question",
                                                            "directive", "commissive"]))})
    splits = {s: datasets.Dataset.from_dict({"dialog": [["a .", f"{s} ?"]], "act": [[1, 2]]},
                                            features=features) for s in ("train", "validation")}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "dd"))
    (example,) = list(DailyDialogSource(path=str(tmp_path / "dd"), split="validation"))
    assert (example.history, example.response, example.meta) == (["a."], "validation?",
                                                                 {"act": "question"})


def test_hub_id_offline_fails_fast_naming_the_path_parameter(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = DailyDialogSource(path="nobody-here/no-such-dataset-xyz")
    with pytest.raises(OfflineError, match="'path'"):
        list(source)


# ------------------------------------------------------------------ chitchat (real data)
def test_chitchat_loads_real_conversations_with_stable_disjoint_splits():
    validation = ChitchatSource(split="validation")
    examples = list(validation)
    assert len(examples) > 1000
    assert all(e.is_safe is True and e.safety_label == "__casual__" for e in examples[:200])
    assert all(e.history and e.response for e in examples[:200])
    ids = {cid for cid, _, _ in validation.conversations()}
    test_ids = {cid for cid, _, _ in ChitchatSource(split="test").conversations()}
    assert test_ids and not ids & test_ids
    assert all(split_of(cid, 5, 5) == "validation" for cid in ids)


def test_chitchat_fixture_joins_lines_of_a_turn_in_order(tmp_path):
    line = lambda text, who: {"text": text, "timestamp": "2018-05-02T19:38:15Z", "sender": who}
    data = {"conv-1": {"prompt": "Hobbies?", "ratings": {}, "start": "2018-05-02T01:38:01Z",
                       "messages": [[line("Hello", "a"), line("how are you?", "a")],
                                    [line("Good!", "b")], [line("Nice", "a")]]}}
    f = tmp_path / "dataset.json"
    f.write_text(json.dumps(data))
    examples = list(ChitchatSource(path=str(f), split="test", validation_percent=0,
                                   test_percent=100))
    assert [(e.history, e.response) for e in examples] == [
        (["Hello how are you?"], "Good!"), (["Hello how are you?", "Good!"], "Nice")]
    assert examples[0].meta["prompt"] == "Hobbies?"
    assert list(ChitchatSource(path=str(f), split="train", validation_percent=0,
                               test_percent=100)) == []


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("factory", [*SOURCES.values(), ChitchatSource])
def test_missing_path_is_a_recipe_error_naming_path(factory, tmp_path):
    with pytest.raises(RecipeError) as info:
        factory(path=str(tmp_path / "nope" / "train.jsonl"))
    assert info.value.key == "path"


@pytest.mark.parametrize("factory, kwargs, key", [
    (BotAdversarialDialogueSource, {"speaker": "robot"}, "speaker"),
    (BotAdversarialDialogueSource, {"split": "dev"}, "split"),
    (BuildItBreakItFixItSource, {"collection": "weird"}, "collection"),
    (BuildItBreakItFixItSource, {"max_round": 4}, "max_round"),
    (ChitchatSource, {"split": "dev"}, "split"),
    (ChitchatSource, {"test_percent": 101}, "test_percent"),
])
def test_bad_parameters_name_their_key(factory, kwargs, key):
    with pytest.raises(RecipeError) as info:
        factory(**kwargs)
    assert info.value.key == key


def _data_error(source) -> DataError:
    with pytest.raises(DataError) as info:
        list(source)
    return info.value


def test_bad_malformed_lines_name_file_row_and_field(tmp_path):
    f = tmp_path / "train.txt"
    f.write_text("text:hi\tlabels:__ok__\tspeaker_to_eval:bot\n\n"
                 "text:hi\\nyo\tlabels:__maybe__\tspeaker_to_eval:bot\n")
    error = _data_error(BotAdversarialDialogueSource(path=str(f)))
    assert (error.file, error.row, error.field) == (str(f), 3, "labels")
    f.write_text("text:hi\tlabels:__ok__\tspeaker_to_eval:robot\n")
    error = _data_error(BotAdversarialDialogueSource(path=str(f)))
    assert (error.row, error.field) == (1, "speaker_to_eval")
    f.write_text("text:hi\tlabels:__ok__\tno colon here\n")
    assert _data_error(BotAdversarialDialogueSource(path=str(f), speaker="any")).row == 1


def test_bbf_malformed_messages_name_file_row_and_field(tmp_path):
    f = tmp_path / "multi_turn_safety.json"
    f.write_text(json.dumps({"train": [{"text": "a\nb", "labels": ["__ok__"]},
                                       {"text": "c\nd", "labels": ["maybe"]}]}))
    error = _data_error(BuildItBreakItFixItSource(path=str(f), collection="multiturn"))
    assert (error.file, error.row, error.field) == (str(f), 2, "labels")
    f.write_text(json.dumps({"train": [{"labels": ["__ok__"]}]}))
    error = _data_error(BuildItBreakItFixItSource(path=str(f), collection="multiturn"))
    assert (error.row, error.field) == (1, "text")
    f.write_text("{not json")
    assert _data_error(BuildItBreakItFixItSource(path=str(f))).file == str(f)


@pytest.mark.parametrize("factory, good, bad_row, field", [
    (DailyDialogSource, {"dialog": ["a", "b"], "act": [1, 2], "emotion": [0, 0]},
     {"dialog": ["a", "b"], "act": [1], "emotion": [0, 0]}, "act"),
    (DailyDialogSource, {"dialog": ["a", "b"]}, {"dialog": 5}, "dialog"),
    (DailyDialogSource, {"dialog": ["a", "b"], "emotion": [0, 0]},
     {"dialog": ["a", "b"], "emotion": [0, 9]}, "emotion"),
    (PersonaChatSource, {"history": ["a"], "candidates": ["b"]},
     {"history": ["a"], "candidates": []}, "candidates"),
    (EmpatheticDialoguesSource, {"conv_id": "c", "utterance_idx": 1, "utterance": "a"},
     {"conv_id": "c", "utterance": "b"}, "utterance_idx"),
    (EmpatheticDialoguesSource, {"conv_id": "c", "utterance_idx": 1, "utterance": "a"},
     {"conv_id": "c", "utterance_idx": 1, "utterance": "again"}, "utterance_idx"),
    (BlendedSkillTalkSource, {"previous_utterance": ["a", "b"], "free_messages": ["c"],
                              "guided_messages": ["d"]},
     {"previous_utterance": ["a", "b"], "free_messages": 3, "guided_messages": ["d"]},
     "free_messages"),
])
def test_casual_malformed_rows_name_file_row_and_field(tmp_path, factory, good, bad_row, field):
    f = write_jsonl(tmp_path / "split.jsonl", [good, bad_row])
    error = _data_error(factory(path=str(f)))
    assert (error.file, error.row, error.field) == (str(f), 2, field)


def test_casual_broken_json_line_names_its_row(tmp_path):
    f = tmp_path / "train.jsonl"
    f.write_text(json.dumps({"dialog": ["a", "b"]}) + "\n" + '{"dialog": ["a", \n')
    error = _data_error(DailyDialogSource(path=str(tmp_path)))
    assert (error.file, error.row) == (str(f), 2)


def test_chitchat_malformed_conversation_names_row_and_field(tmp_path):
    f = tmp_path / "dataset.json"
    f.write_text(json.dumps({"ok": {"messages": [[{"text": "hi"}]]}, "bad": {"messages": 7}}))
    error = _data_error(ChitchatSource(path=str(f), split="test", validation_percent=0,
                                       test_percent=100))
    assert (error.file, error.row, error.field) == (str(f), 2, "messages")


def test_unknown_split_of_a_folder_is_a_recipe_error_naming_split():
    with pytest.raises(RecipeError) as info:
        list(PersonaChatSource(split="test"))  # PersonaChat has train and validation only
    assert info.value.key == "split"
