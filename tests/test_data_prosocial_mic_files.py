"""Data sources `local_files`, `prosocial_dialog`, `mic`, their embedded samples, and the hub
loader's local and offline behaviour."""

from __future__ import annotations

import csv
import importlib
import json
import time

import datasets  # imported before any test sets HF_*_OFFLINE (the library reads it at import)
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from losscraft.data.hub_datasets import load_hf_dataset
from losscraft.errors import DataError, OfflineError, RecipeError
from losscraft.types import SAFETY_LABELS
from losscraft_plugins.data import local_files, mic, prosocial_dialog
from losscraft_plugins.data.local_files import LocalFilesSource
from losscraft_plugins.data.mic import MICSource
from losscraft_plugins.data.prosocial_dialog import ProsocialDialogSource

CAUTION = "__needs_caution__"


def write(path, rows, fmt):
    """Write dict rows as JSONL, CSV (lists as JSON cells) or Parquet; return the path."""
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "csv":
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
                        for r in rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def pd_row(dialogue, turn, label="__casual__", **extra):
    return {"context": f"c{dialogue}.{turn}", "response": f"r{dialogue}.{turn}",
            "rots": [f"rot{dialogue}.{turn}"], "safety_label": label, "dialogue_id": dialogue,
            "response_id": turn, "episode_done": False, **extra}


# ---------------------------------------------------------------- prosocial_dialog

def test_prosocial_sample_counts_labels_and_histories():
    by_split = {s: list(ProsocialDialogSource(split=s)) for s in ("train", "validation", "test")}
    # 88 templated dialogues (298 rows) + one dialogue per hand-written scenario
    assert {s: len(v) for s, v in by_split.items()} == {"train": 612, "validation": 92,
                                                       "test": 128}
    everything = [ex for v in by_split.values() for ex in v]
    assert len({ex.meta["dialogue_id"] for ex in everything}) == 568
    for examples in by_split.values():
        assert {ex.safety_label for ex in examples} == set(SAFETY_LABELS)
    assert all(ex.is_safe is True and ex.source == "prosocial_dialog" for ex in everything)
    assert all(ex.rots for ex in everything if ex.safety_label != "__casual__")
    assert all(ex.is_prosocial is (None if ex.safety_label == "__casual__" else True)
               for ex in everything)
    previous = {}
    for ex in everything:  # each turn's history = the previous turn's history + its response
        did, rid = ex.meta["dialogue_id"], ex.meta["response_id"]
        if rid == 0:
            assert len(ex.history) == 1
        else:
            prev = previous[did]
            assert ex.history[:-1] == prev.history + [prev.response]
        previous[did] = ex
    assert max(len(ex.history) for ex in everything) == 9  # five-turn dialogues exist


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_prosocial_rebuilds_history_from_ids_in_any_row_order(tmp_path, fmt):
    rows = [pd_row(7, 2), pd_row(3, 1, CAUTION), pd_row(7, 0, CAUTION), pd_row(3, 0, CAUTION),
            pd_row(7, 1, "__needs_intervention__")]
    path = write(tmp_path / f"pd.{fmt}", rows, fmt)
    examples = {ex.id: ex for ex in ProsocialDialogSource(path=str(path))}
    assert list(examples) == ["7-0", "7-1", "7-2", "3-0", "3-1"]  # dialogue order as first seen
    assert examples["7-2"].history == ["c7.0", "r7.0", "c7.1", "r7.1", "c7.2"]
    assert examples["7-2"].response == "r7.2"
    assert examples["3-1"].history == ["c3.0", "r3.0", "c3.1"]
    assert examples["7-1"].safety_label == "__needs_intervention__"
    assert examples["3-1"].rots == ["rot3.1"]


def test_prosocial_label_filters_and_split(tmp_path):
    rows = [pd_row(1, 0, "__possibly_needs_caution__", split="train"),
            pd_row(1, 1, CAUTION, split="train"), pd_row(1, 2, split="train"),
            pd_row(2, 0, CAUTION, split="test")]
    path = str(write(tmp_path / "pd.jsonl", rows, "jsonl"))
    ids = [ex.id for ex in ProsocialDialogSource(path=path, min_safety_label=CAUTION)]
    assert ids == ["1-1"]
    only = ProsocialDialogSource(path=path, safety_labels=["__casual__"])
    assert [(ex.id, ex.history) for ex in only] == [("1-2", ["c1.0", "r1.0", "c1.1", "r1.1",
                                                             "c1.2"])]
    assert [ex.id for ex in ProsocialDialogSource(path=path, split="test")] == ["2-0"]
    with pytest.raises(RecipeError) as e:
        list(ProsocialDialogSource(path=path, split="validation"))
    assert e.value.key == "split" and "test" in str(e.value)
    with pytest.raises(RecipeError) as e:
        ProsocialDialogSource(min_safety_label="__spicy__")
    assert e.value.key == "min_safety_label"


def test_prosocial_casual_negatives_are_borrowed_and_weighted():
    examples = list(ProsocialDialogSource(split="train", casual_negatives=2, seed=3))
    casual = {ex.response: ex.meta["dialogue_id"] for ex in examples
              if ex.safety_label == "__casual__"}
    for ex in examples:
        if ex.safety_label == "__casual__":
            assert ex.negatives == [] and ex.negative_weights is None
            continue
        assert len(ex.negatives) == 2 and len(set(ex.negatives)) == 2
        assert all(casual[n] != ex.meta["dialogue_id"] for n in ex.negatives)
        level = SAFETY_LABELS.index(ex.safety_label)
        assert ex.negative_weights == [0.25 * level] * 2
    again = list(ProsocialDialogSource(split="train", casual_negatives=2, seed=3))
    assert [ex.negatives for ex in again] == [ex.negatives for ex in examples]


def test_prosocial_malformed_rows(tmp_path):
    dup = write(tmp_path / "dup.jsonl", [pd_row(1, 0), pd_row(1, 0)], "jsonl")
    with pytest.raises(DataError) as e:
        list(ProsocialDialogSource(path=str(dup)))
    assert (e.value.field, e.value.row) == ("response_id", 2)
    bad = write(tmp_path / "bad.jsonl", [pd_row(1, 0), pd_row(1, 1, "__rude__")], "jsonl")
    with pytest.raises(DataError) as e:
        list(ProsocialDialogSource(path=str(bad)))
    assert (e.value.field, e.value.row, e.value.file) == ("safety_label", 2, str(bad))
    with pytest.raises(RecipeError) as e:
        ProsocialDialogSource(path=str(tmp_path / "nope.jsonl"))
    assert e.value.key == "path" and "nope.jsonl" in str(e.value)


def test_prosocial_dataset_param_reads_a_saved_dataset_folder(tmp_path):
    rows = [pd_row(4, 1, CAUTION), pd_row(4, 0, CAUTION)]
    datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)}).save_to_disk(
        str(tmp_path / "saved"))
    examples = list(ProsocialDialogSource(dataset=str(tmp_path / "saved"), split="validation"))
    assert [ex.history for ex in examples] == [["c4.0"], ["c4.0", "r4.0", "c4.1"]]


# ---------------------------------------------------------------- mic

def test_mic_sample_rows_and_safety_mapping():
    counts = {s: len(list(MICSource(split=s))) for s in ("train", "dev", "test")}
    assert counts == {"train": 795, "dev": 134, "test": 198}
    assert len(list(MICSource(split="validation"))) == 134  # alias of dev
    examples = list(MICSource(split=None))
    assert len(examples) == 1127
    # A_agrees 2 guides, 1 ignores (safe, not prosocial), 0 condones
    mapping = {2: (True, True), 1: (True, False), 0: (False, False)}
    assert all((ex.is_safe, ex.is_prosocial) == mapping[ex.meta["A_agrees"]] for ex in examples)
    assert {ex.meta["A_agrees"] for ex in examples} == {0, 1, 2}
    assert all(len(ex.history) == 1 and len(ex.rots) == 1 for ex in examples)
    assert len(list(MICSource(split=None, drop_neutral=True))) == 1127 - sum(
        ex.meta["A_agrees"] == 1 for ex in examples)


def test_mic_pair_negatives_group_answers_by_question(tmp_path):
    cols = ["Q", "A", "rot", "moral", "A_agrees", "rot-agree", "violation-severity", "chatbot",
            "split"]
    table = [["q1", "good", "be kind", "care", 2, 4, 4, "blenderbot", "train"],
             ["q1", "bad", "be kind", "care", 0, 4, 4, "dialoGPT", "train"],
             ["q1", "meh", "be kind", "care", 1, 4, 4, "gpt-neo", "train"],
             ["q1", "worse", "be fair", "fairness", 0, 3, 2, "gpt-neo", "train"],
             ["q1", "fine", "be fair", "fairness", 2, 3, 2, "blenderbot", "train"],
             ["q2", "ok", "rule", "care", 2, 5, 3, "dialoGPT", "train"]]  # no negative
    path = write(tmp_path / "mic.csv", [dict(zip(cols, r)) for r in table], "csv")
    paired = list(MICSource(path=str(path), pair_negatives=True))
    assert [ex.response for ex in paired] == ["good", "fine"]
    for ex in paired:
        assert ex.history == ["q1"] and ex.is_safe is True
        assert ex.negatives == ["bad", "worse"] and ex.negative_weights == [0.8, 0.4]
        assert ex.rots == ["be kind", "be fair"]
    kept = list(MICSource(path=str(path), pair_negatives=True, require_negatives=False))
    assert [ex.response for ex in kept] == ["good", "fine", "ok"] and kept[2].negatives == []
    sample = list(MICSource(pair_negatives=True))
    assert len(sample) == 361 and all(ex.negatives for ex in sample)


@pytest.mark.parametrize("change, field", [({"A_agrees": "yes"}, "A_agrees"),
                                           ({"A_agrees": 3}, "A_agrees"),
                                           ({"violation-severity": 9}, "violation-severity")])
def test_mic_bad_values_name_row_and_field(tmp_path, change, field):
    rows = [{"Q": "q", "A": f"a{i}", "rot": "r", "moral": "care", "A_agrees": 2, "rot-agree": 3,
             "violation-severity": 2, "chatbot": "x", "split": "train"} for i in range(3)]
    rows[1].update(change)
    path = write(tmp_path / "mic.csv", rows, "csv")
    with pytest.raises(DataError) as e:
        list(MICSource(path=str(path)))
    assert (e.value.row, e.value.field, e.value.file) == (2, field, str(path))
    assert f"row 2, field '{field}'" in str(e.value)


def test_mic_missing_column_names_the_field(tmp_path):
    path = write(tmp_path / "mic.csv", [{"Q": "q", "rot": "r", "A_agrees": 2, "split": "train"}],
                 "csv")
    with pytest.raises(DataError) as e:
        list(MICSource(path=str(path)))
    assert (e.value.row, e.value.field) == (1, "A") and "missing" in str(e.value)


# ---------------------------------------------------------------- local_files

@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_local_files_field_mapping(tmp_path, fmt):
    rows = [{"ctx": "hi || how are you?", "reply": "fine", "label": "safe", "sev": "__casual__",
             "rules": ["be nice"], "bad": ["go away"], "w": [0.5], "split": "train"},
            {"ctx": "you there?", "reply": "leave me alone", "label": "unsafe", "sev": CAUTION,
             "rules": [], "bad": [], "w": [], "split": "train"},
            {"ctx": "x", "reply": "y", "label": "safe", "sev": "__casual__", "rules": [],
             "bad": [], "w": [], "split": "test"}]
    path = write(tmp_path / f"data.{fmt}", rows, fmt)
    source = LocalFilesSource(path=str(path), history_field="ctx", response_field="reply",
                              history_separator=" || ", is_safe_field="label",
                              safety_label_field="sev", rots_field="rules",
                              negatives_field="bad", negative_weights_field="w", split="train")
    first, second = list(source)
    assert first.history == ["hi", "how are you?"] and first.response == "fine"
    assert (first.is_safe, first.safety_label, first.rots) == (True, "__casual__", ["be nice"])
    assert (first.negatives, first.negative_weights) == (["go away"], [0.5])
    assert (second.history, second.is_safe, second.safety_label) == (["you there?"], False,
                                                                     CAUTION)
    assert first.id == "data:1" and first.source == "local_files"
    assert len(list(LocalFilesSource(path=str(path), history_field="ctx",
                                     response_field="reply"))) == 3


def test_local_files_list_history_and_defaults(tmp_path):
    path = write(tmp_path / "d.jsonl", [{"history": ["a", "b", "c"], "response": "d"}], "jsonl")
    (ex,) = list(LocalFilesSource(path=str(path)))
    assert ex.history == ["a", "b", "c"] and ex.is_safe is None and ex.rots == []


def test_local_files_errors_name_where(tmp_path):
    with pytest.raises(RecipeError) as e:
        LocalFilesSource(path=str(tmp_path / "missing.jsonl"))
    assert e.value.key == "path" and "missing.jsonl" in str(e.value)
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(RecipeError) as e:
        LocalFilesSource(path=str(tmp_path / "d.txt"))
    assert e.value.key == "path"
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"history": ["a"], "response": "b"}\n{"history": ["a"], "resp\n')
    with pytest.raises(DataError) as e:
        list(LocalFilesSource(path=str(broken)))
    assert e.value.row == 2 and "invalid JSON" in str(e.value)
    path = write(tmp_path / "d.jsonl", [{"history": ["a"], "response": "b"},
                                        {"history": ["a"], "reply": "b"}], "jsonl")
    with pytest.raises(DataError) as e:
        list(LocalFilesSource(path=str(path)))
    assert (e.value.row, e.value.field) == (2, "response")
    good = write(tmp_path / "good.jsonl", [{"history": ["a"], "response": "b"}], "jsonl")
    with pytest.raises(DataError) as e:  # a column named in the recipe that no row has
        list(LocalFilesSource(path=str(good), rots_field="rules"))
    assert e.value.field == "rules"
    bad_bool = write(tmp_path / "b.jsonl", [{"history": "a", "response": "b", "is_safe": "maybe"}],
                     "jsonl")
    with pytest.raises(DataError) as e:
        list(LocalFilesSource(path=str(bad_bool)))
    assert (e.value.row, e.value.field) == (1, "is_safe")


# ---------------------------------------------------------------- hub loader

@pytest.mark.parametrize("env", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_hub_offline_fails_fast_with_guidance(monkeypatch, env):
    monkeypatch.setenv(env, "1")
    start = time.monotonic()
    with pytest.raises(OfflineError) as e:
        load_hf_dataset("losscraft-tests/not-a-dataset", split="train", param="dataset")
    assert time.monotonic() - start < 2
    assert "'dataset'" in str(e.value) and "local folder" in str(e.value)
    with pytest.raises(OfflineError):  # and through a source, at iteration time
        list(ProsocialDialogSource(dataset="losscraft-tests/not-a-dataset"))


def test_hub_unreachable_fails_fast(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    start = time.monotonic()
    with pytest.raises(OfflineError) as e:
        load_hf_dataset("losscraft-tests/not-a-dataset", split="train", param="corpus")
    assert time.monotonic() - start < 5
    assert "unreachable" in str(e.value) and "'corpus'" in str(e.value)


def test_hub_loads_local_files_and_names_missing_paths(tmp_path):
    path = write(tmp_path / "rows.jsonl", [{"a": 1}, {"a": 2}], "jsonl")
    assert load_hf_dataset(str(path), split="train")["a"] == [1, 2]
    with pytest.raises(RecipeError) as e:
        load_hf_dataset(str(tmp_path / "gone.jsonl"), split="train", param="corpus")
    assert e.value.key == "corpus"


# ---------------------------------------------------------------- plugins and samples

def test_modules_register_their_sources():
    found = {}
    for module in (local_files, prosocial_dialog, mic):
        module.register_data_sources(lambda name, factory: found.__setitem__(name, factory))
    assert found == {"local_files": LocalFilesSource, "prosocial_dialog": ProsocialDialogSource,
                     "mic": MICSource}


@pytest.mark.parametrize("module, sample", [("make_prosocial_sample", "prosocial_dialog_sample"),
                                            ("make_mic_sample", "mic_sample")])
def test_shipped_samples_match_their_generators(module, sample):
    gen = importlib.import_module(f"losscraft_plugins.data.samples.{module}")
    rows = gen.build_rows()
    if sample.startswith("mic"):
        with open(gen.OUT, newline="") as f:
            shipped = list(csv.DictReader(f))
        assert shipped == [{k: str(v) for k, v in r.items()} for r in rows]
    else:
        assert [json.loads(line) for line in gen.OUT.read_text().splitlines()] == rows
