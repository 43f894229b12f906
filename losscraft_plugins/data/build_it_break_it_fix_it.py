"""Data source ``build_it_break_it_fix_it``: Build it Break it Fix it for Dialogue Safety
(Dinan et al., 2019), ParlAI's ``dialogue_safety`` task: messages labelled ``__ok__``/``__notok__``.

Files as ParlAI downloads them into ``data/dialogue_safety/``:

- ``single_turn_safety.json``: ``{"standard"|"adversarial": {"train"|"valid"|"test": {"1"|"2"|"3":
  {"good": [msg, ...], "bad": [msg, ...]}}}}``. Each message becomes an example with an empty
  history.
- ``multi_turn_safety.json``: ``{"train"|"valid"|"test": [msg, ...]}``; ``text`` is the dialog so
  far (turns joined by ``"\\n"``) and the label is about its last turn, the example's response.

A ``msg`` is a ParlAI message dict with ``text`` and ``labels`` (``["__ok__"]``/``["__notok__"]``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from losscraft.errors import DataError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import PARLAI_LABELS, check_choice, check_local, sample_path

SINGLE_TURN, MULTI_TURN = "single_turn_safety.json", "multi_turn_safety.json"
COLLECTIONS = {"standard": ("standard",), "adversarial": ("adversarial",),
               "multiturn": ("multiturn",), "single_turn": ("standard", "adversarial"),
               "all": ("standard", "adversarial", "multiturn")}
SPLITS = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}


class BuildItBreakItFixItSource:
    """Build-it Break-it Fix-it messages; ``is_safe`` from each message's label.

    Args:
        path: the ``dialogue_safety`` folder (holding the two JSON files), or one of the files.
            Defaults to the project's small sample in the same layout.
        split: ``train``, ``valid`` (or ``validation``) or ``test``.
        collection: ``standard`` or ``adversarial`` (single-turn), ``multiturn``, ``single_turn``
            (both single-turn collections) or ``all``.
        max_round: single-turn rounds 1..``max_round`` (1-3) are read, as ParlAI's ``--round``.
        round_only: read only round ``max_round`` (ParlAI's ``--round-only``).
    """

    name = "build_it_break_it_fix_it"

    def __init__(self, path: str | None = None, split: str = "train", collection: str = "all",
                 max_round: int = 3, round_only: bool = False):
        self.split = SPLITS[check_choice(split, tuple(SPLITS), param="split")]
        self.collections = COLLECTIONS[check_choice(collection, tuple(COLLECTIONS),
                                                    param="collection")]
        if max_round not in (1, 2, 3) or isinstance(max_round, bool):
            raise RecipeError(f"expected 1, 2 or 3, got {max_round!r}", key="max_round")
        self.rounds = [max_round] if round_only else list(range(1, max_round + 1))
        location = check_local(path) if path is not None else sample_path("dialogue_safety")
        if location.is_file():
            self.files = [location]
        else:
            wanted = ([SINGLE_TURN] if set(self.collections) - {"multiturn"} else []) + \
                     ([MULTI_TURN] if "multiturn" in self.collections else [])
            self.files = [location / name for name in wanted]
            for file in self.files:
                if not file.is_file():
                    raise RecipeError(f"{location} has no {file.name} (needed for collection "
                                      f"{collection!r})", key="path")

    def __iter__(self) -> Iterator[Example]:
        for file in self.files:
            try:
                from losscraft.data.text import read_text_checked

                data = json.loads(read_text_checked(file))
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON at line {e.lineno}: {e.msg}", file=str(file)) from e
            if isinstance(data, dict) and ({"standard", "adversarial"} & set(data)):
                self._check_wanted(file, "single-turn", {"standard", "adversarial"})
                yield from self._single_turn(data, str(file))
            elif isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
                self._check_wanted(file, "multi-turn", {"multiturn"})
                yield from self._multi_turn(data, str(file))
            else:
                raise DataError("neither ParlAI's single_turn_safety.json layout "
                                "({collection: {split: {round: {good, bad}}}}) nor "
                                "multi_turn_safety.json's ({split: [messages]})", file=str(file))

    def _check_wanted(self, file: Path, layout: str, collections: set[str]) -> None:
        if not collections & set(self.collections):
            raise RecipeError(f"{file} holds {layout} data, which collection "
                              f"{'/'.join(self.collections)!r} does not select", key="collection")

    def _section(self, data: dict, keys: list[str], file: str):
        node = data
        for depth, key in enumerate(keys):
            if not isinstance(node, dict) or key not in node:
                raise DataError(f"missing {'/'.join(keys[:depth + 1])!r}", file=file, field=key)
            node = node[key]
        if not isinstance(node, list):
            raise DataError(f"{'/'.join(keys)!r} must be a list of messages", file=file,
                            field=keys[-1])
        return node

    def _single_turn(self, data: dict, file: str) -> Iterator[Example]:
        for collection in self.collections:
            if collection == "multiturn":
                continue
            for rnd in self.rounds:
                for kind in ("good", "bad"):
                    where = [collection, self.split, str(rnd), kind]
                    for row, msg in enumerate(self._section(data, where, file), 1):
                        turns, is_safe = _message(msg, file=file, row=row, where=where)
                        yield Example(history=[], response=" ".join(turns), is_safe=is_safe,
                                      source=self.name,
                                      id=f"{self.name}:{'/'.join(where)}:{row}",
                                      meta={"collection": collection, "round": rnd})

    def _multi_turn(self, data: dict, file: str) -> Iterator[Example]:
        for row, msg in enumerate(self._section(data, [self.split], file), 1):
            turns, is_safe = _message(msg, file=file, row=row, where=[self.split])
            yield Example(history=turns[:-1], response=turns[-1], is_safe=is_safe,
                          source=self.name, id=f"{self.name}:multiturn/{self.split}:{row}",
                          meta={"collection": "multiturn"})


def _message(msg, *, file: str, row: int, where: list[str]) -> tuple[list[str], bool]:
    """Turns (non-empty, oldest first) and safety of one ParlAI message dict."""
    context = f"in {'/'.join(where)}"
    if not isinstance(msg, dict):
        raise DataError(f"{context}: expected a message object", file=file, row=row)
    text = msg.get("text")
    turns = [t.strip() for t in text.split("\n") if t.strip()] if isinstance(text, str) else []
    if not turns:
        raise DataError(f"{context}: expected non-empty text", file=file, row=row, field="text")
    labels = msg.get("labels", msg.get("eval_labels"))
    label = labels[0] if isinstance(labels, list) and labels else labels
    if label not in PARLAI_LABELS:
        raise DataError(f"{context}: expected ['__ok__'] or ['__notok__'], got {labels!r}",
                        file=file, row=row, field="labels")
    return turns, PARLAI_LABELS[label]


@hookimpl
def register_data_sources(register):
    register("build_it_break_it_fix_it", BuildItBreakItFixItSource)
