"""Data source ``chitchat``: the BYU Chit-Chat Challenge conversations (7,168 real casual chats
between people, MIT licence), shipped inside the ``chitchat-dataset`` package.

The package's ``dataset.json`` maps a conversation UUID to ``{"prompt", "ratings", "start",
"messages"}``; ``messages`` is a list of turns, each a list of ``{"text", "timestamp", "sender"}``
lines sent in a row by one person. A turn is its lines joined by a space; each turn after the
first becomes one `Example` whose history is every earlier turn. The data has no splits: this
source assigns each conversation to ``train``/``validation``/``test`` by a hash of its UUID, so
the split is stable across runs, machines and versions of this code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from losscraft.errors import DataError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import CASUAL, check_choice, check_local

SPLITS = ("train", "validation", "test")


def split_of(conversation_id: str, validation_percent: int, test_percent: int) -> str:
    """``test`` / ``validation`` / ``train`` from the first 8 hex digits of SHA-256 of the id."""
    bucket = int(hashlib.sha256(conversation_id.encode()).hexdigest()[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    return "validation" if bucket < test_percent + validation_percent else "train"


class ChitchatSource:
    """Real casual conversations from the ``chitchat-dataset`` package.

    Args:
        path: a ``dataset.json`` in the package's format; defaults to the copy the package ships.
        split: ``train``, ``validation`` or ``test`` (assigned per conversation by id hash).
        validation_percent: share of conversations, in percent, put in ``validation``.
        test_percent: share of conversations, in percent, put in ``test``.

    Turns are gold human messages, so examples get ``is_safe=True`` and
    ``safety_label="__casual__"``; the chats are unmoderated, so an occasional rude word is
    possible. ``meta`` holds the conversation ``prompt`` and ``conversation_id``.
    """

    name = "chitchat"

    def __init__(self, path: str | None = None, split: str = "train", validation_percent: int = 5,
                 test_percent: int = 5):
        self.split = check_choice(split, SPLITS, param="split")
        for key, value in (("validation_percent", validation_percent),
                           ("test_percent", test_percent)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
                raise RecipeError(f"expected an integer percentage 0..100, got {value!r}", key=key)
        if validation_percent + test_percent > 100:
            raise RecipeError("validation_percent + test_percent exceeds 100", key="test_percent")
        self.path = str(check_local(path)) if path is not None else None
        self.validation_percent, self.test_percent = validation_percent, test_percent
        self._conversations: list[tuple[str, str, list[str]]] | None = None

    def _load(self) -> dict:
        import chitchat_dataset

        file = self.path or str(Path(chitchat_dataset.__file__).with_name("dataset.json"))
        try:  # the package's own reader; it only json.loads the file
            return chitchat_dataset.Dataset(file) if self.path else chitchat_dataset.Dataset()
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON at line {e.lineno}: {e.msg}", file=file) from e
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read: {e}", file=file) from e

    def conversations(self) -> list[tuple[str, str, list[str]]]:
        """``(conversation_id, prompt, turns)`` of this split, in file order (cached)."""
        if self._conversations is None:
            data, file = self._load(), self.path or "chitchat_dataset/dataset.json"
            if not isinstance(data, dict):
                raise DataError("expected a JSON object mapping conversation ids to "
                                "conversations", file=file)
            selected = []
            for number, (conv_id, conv) in enumerate(data.items(), 1):
                if split_of(conv_id, self.validation_percent, self.test_percent) != self.split:
                    continue
                messages = conv.get("messages") if isinstance(conv, dict) else None
                try:
                    turns = [" ".join(line["text"].strip() for line in m) for m in messages]
                except (TypeError, KeyError, AttributeError):
                    raise DataError("expected a list of turns, each a list of {text, timestamp, "
                                    "sender} objects", file=file, row=number,
                                    field="messages") from None
                selected.append((conv_id, str(conv.get("prompt") or ""), turns))
            self._conversations = selected
        return self._conversations

    def __iter__(self) -> Iterator[Example]:
        for conv_id, prompt, turns in self.conversations():
            for t in range(1, len(turns)):
                if not turns[t]:
                    continue
                yield Example(history=[h for h in turns[:t] if h], response=turns[t],
                              is_safe=True, safety_label=CASUAL, source=self.name,
                              id=f"{self.name}:{conv_id}:{t}",
                              meta={"prompt": prompt, "conversation_id": conv_id})


@hookimpl
def register_data_sources(register):
    register("chitchat", ChitchatSource)
