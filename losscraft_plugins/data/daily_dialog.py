"""Data source ``daily_dialog``: DailyDialog (Li et al., 2017), everyday two-person conversations.

Rows have the Hugging Face schema: ``dialog`` (the turns), ``act`` and ``emotion`` (one class label
per turn). Each turn after the first becomes one `Example` whose history is every earlier turn.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import (CASUAL, check_path, class_labels, sample_path,
                                                split_rows)

ACTS = ("__dummy__", "inform", "question", "directive", "commissive")
EMOTIONS = ("no emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")

_SPACE_BEFORE = re.compile(r"\s+([,.!?;:%)\]])")
_SPACE_AFTER = re.compile(r"([(\[$])\s+")
_APOSTROPHE = re.compile(r"\s*([’'])\s*(s|m|re|ve|ll|d|t)\b", re.IGNORECASE)


def detokenize(text: str) -> str:
    """Undo DailyDialog's spaced punctuation: ``"Hi , Jim ! I ’ m here . "`` -> ``"Hi, Jim! I’m
    here."``."""
    text = _APOSTROPHE.sub(r"\1\2", text.strip())
    text = _SPACE_AFTER.sub(r"\1", _SPACE_BEFORE.sub(r"\1", text))
    return re.sub(r"\s{2,}", " ", text)


class DailyDialogSource:
    """DailyDialog conversations, one example per turn after the first.

    Args:
        path: a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file (taken as the split), a
            folder with files named after the splits (``train.jsonl``, ...) or a dataset folder/hub
            id loaded through ``datasets``. Defaults to the project's small sample.
        split: ``train``, ``validation`` or ``test`` (ignored for a single file).
        detokenize: undo DailyDialog's space-separated punctuation (``"Hi , Jim !"`` ->
            ``"Hi, Jim!"``) so the model does not learn that spacing.

    Every example is a gold human turn: ``is_safe=True``, ``safety_label="__casual__"``;
    ``meta`` holds the turn's dialog ``act`` and ``emotion`` names when the row has them.
    """

    name = "daily_dialog"

    def __init__(self, path: str | None = None, split: str = "train", detokenize: bool = True):
        if not isinstance(split, str) or not split:
            raise RecipeError(f"expected a split name, got {split!r}", key="split")
        self.path = check_path(path if path is not None else sample_path("daily_dialog"))
        self.split, self.detokenize = split, bool(detokenize)

    def __iter__(self) -> Iterator[Example]:
        for row in split_rows(self.path, self.split):
            turns = row.strings("dialog")
            if not turns:
                raise row.error("dialog", "expected a non-empty list of turns")
            acts = class_labels(row, "act", ACTS)
            emotions = class_labels(row, "emotion", EMOTIONS)
            for field, labels in (("act", acts), ("emotion", emotions)):
                if labels and len(labels) != len(turns):
                    raise row.error(field, f"has {len(labels)} labels for {len(turns)} turns")
            clean = [detokenize(t) if self.detokenize else t.strip() for t in turns]
            for t in range(1, len(clean)):
                if not clean[t]:
                    continue
                meta = {}
                if acts:
                    meta["act"] = acts[t]
                if emotions:
                    meta["emotion"] = emotions[t]
                yield Example(history=[h for h in clean[:t] if h], response=clean[t],
                              is_safe=True, safety_label=CASUAL, source=self.name,
                              id=f"{self.name}:{self.split}:{row.number}:{t}", meta=meta)


@hookimpl
def register_data_sources(register):
    register("daily_dialog", DailyDialogSource)
