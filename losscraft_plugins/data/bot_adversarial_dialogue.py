"""Data source ``bot_adversarial_dialogue``: Bot-Adversarial Dialogue (BAD; Xu et al., 2021),
people trying to lead a bot into unsafe replies, every utterance labelled ``__ok__``/``__notok__``.

Files are in ParlAI's text format, as downloaded into
``bot_adversarial_dialogue/dialogue_datasets/bot_adversarial_dialogue_datasets_with_persona/``
(``train.txt``, ``valid.txt``, ``test.txt``): one example per line, tab-separated ``key:value``
fields. ``text`` is the dialog so far with turns joined by an escaped newline (``\\n``); its last
turn is the labelled one; ``labels`` (or ``eval_labels``) is ``__ok__`` or ``__notok__``;
``speaker_to_eval`` says whether that turn is the ``human``'s or the ``bot``'s; ``bot_persona``
and ``episode_done`` are kept in ``meta``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from losscraft.errors import DataError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import PARLAI_LABELS, check_choice, check_local, sample_path

SPLIT_FILES = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}
SAMPLE = sample_path("bot_adversarial_dialogue") / "bot_adversarial_dialogue_datasets_with_persona"


def _unescape(value: str) -> str:
    return value.replace("\\t", "\t").replace("\\n", "\n").replace("__PIPE__", "|")


def parse_parlai_line(line: str, *, file: str, row: int) -> dict[str, str]:
    """The ``key:value`` fields of one ParlAI text-format line, escapes undone (``\\n``, ``\\t``,
    ``__PIPE__``); a field without a colon raises `DataError` naming the row."""
    fields = {}
    for chunk in line.rstrip("\r\n").split("\t"):
        if not chunk:
            continue
        key, colon, value = chunk.partition(":")
        if not colon or not key:
            raise DataError(f"expected key:value, got {chunk[:40]!r}", file=file, row=row,
                            field=key or None)
        fields[key] = _unescape(value)
    return fields


class BotAdversarialDialogueSource:
    """BAD utterances: the last turn of ``text`` is the response, earlier turns the history,
    ``is_safe`` from its label.

    Args:
        path: the folder holding ``train.txt``/``valid.txt``/``test.txt``, or one such file
            (taken whole). Defaults to the project's small sample in the same layout.
        split: ``train``, ``valid`` (or ``validation``) or ``test``; ignored for a single file.
        speaker: whose turns become examples: ``bot`` (the default: bot replies are what a
            dialog model learns from or learns to avoid), ``human`` or ``any``.
    """

    name = "bot_adversarial_dialogue"

    def __init__(self, path: str | None = None, split: str = "train", speaker: str = "bot"):
        check_choice(split, tuple(SPLIT_FILES), param="split")
        self.speaker = check_choice(speaker, ("bot", "human", "any"), param="speaker")
        folder_or_file = check_local(path) if path is not None else SAMPLE
        self.split = split
        if folder_or_file.is_dir():
            self.file = folder_or_file / f"{SPLIT_FILES[split]}.txt"
            if not self.file.is_file():
                raise RecipeError(f"{folder_or_file} has no {self.file.name} for split {split!r}",
                                  key="path")
        else:
            self.file = folder_or_file

    def __iter__(self) -> Iterator[Example]:
        file = str(self.file)
        from losscraft.data.text import read_text_checked

        for row, line in enumerate(read_text_checked(self.file).split("\n"), 1):
            if not line.strip():
                continue
            fields = parse_parlai_line(line, file=file, row=row)
            example = self._example(fields, file=file, row=row)
            if example is not None:
                yield example

    def _example(self, fields: dict[str, str], *, file: str, row: int) -> Example | None:
        label_key = "eval_labels" if "eval_labels" in fields and "labels" not in fields \
            else "labels"
        label = fields.get(label_key, "").split("|")[0].strip()
        if label not in PARLAI_LABELS:
            raise DataError(f"expected __ok__ or __notok__, got {label!r}", file=file, row=row,
                            field=label_key)
        speaker = fields.get("speaker_to_eval", "").strip()
        if self.speaker != "any" and speaker not in ("bot", "human"):
            raise DataError(f"expected bot or human, got {speaker!r}", file=file, row=row,
                            field="speaker_to_eval")
        if self.speaker != "any" and speaker != self.speaker:
            return None
        turns = [t.strip() for t in fields.get("text", "").split("\n")]
        if not turns[-1]:
            raise DataError("the last turn (the labelled utterance) is empty", file=file, row=row,
                            field="text")
        meta = {"label": label, "speaker_to_eval": speaker,
                "bot_persona": fields.get("bot_persona", ""),
                "episode_done": fields.get("episode_done", "").strip().lower() == "true"}
        return Example(history=[t for t in turns[:-1] if t], response=turns[-1],
                       is_safe=PARLAI_LABELS[label],
                       is_prosocial=False if not PARLAI_LABELS[label] else None, source=self.name,
                       id=f"{self.name}:{Path(file).stem}:{row}", meta=meta)


@hookimpl
def register_data_sources(register):
    register("bot_adversarial_dialogue", BotAdversarialDialogueSource)
