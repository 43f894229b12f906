"""Data source ``empathetic_dialogues``: EmpatheticDialogues (Rashkin et al., 2019), conversations
grounded in a situation that made the first speaker feel one of 32 emotions.

Rows have the Hugging Face schema, one row per utterance: ``conv_id``, ``utterance_idx`` (1-based),
``context`` (the emotion), ``prompt`` (the situation), ``speaker_idx``, ``utterance``; commas are
written ``_comma_``. Conversations are rebuilt from ``conv_id``, ordered by ``utterance_idx``,
whatever the row order; each utterance after the first becomes one `Example`.
"""

from __future__ import annotations

from collections.abc import Iterator

from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import CASUAL, check_path, sample_path, split_rows
from losscraft_plugins.data.tables import Row


def unescape(text: str) -> str:
    """EmpatheticDialogues' ``_comma_`` back to ``,``."""
    return text.replace("_comma_", ",").strip()


class EmpatheticDialoguesSource:
    """EmpatheticDialogues conversations, one example per utterance after the first.

    Args:
        path: a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file (taken as the split), a
            folder with files named after the splits (``train.jsonl``, ...) or a dataset
            folder/hub id loaded through ``datasets``. Defaults to the project's small sample.
        split: ``train``, ``validation`` or ``test`` (ignored for a single file).

    Every example is a gold human turn: ``is_safe=True``, ``safety_label="__casual__"``;
    ``meta`` holds ``emotion``, ``prompt`` (commas restored), ``conv_id`` and ``utterance_idx``.
    """

    name = "empathetic_dialogues"

    def __init__(self, path: str | None = None, split: str = "train"):
        if not isinstance(split, str) or not split:
            raise RecipeError(f"expected a split name, got {split!r}", key="split")
        self.path = check_path(path if path is not None else sample_path("empathetic_dialogues"))
        self.split = split

    def conversations(self) -> dict[str, list[tuple[int, Row]]]:
        """Rows grouped by ``conv_id`` (first-seen order), each sorted by ``utterance_idx``."""
        grouped: dict[str, dict[int, Row]] = {}
        for row in split_rows(self.path, self.split):
            conv_id = row.text("conv_id")
            index = row.integer("utterance_idx")
            row.text("utterance")  # validated here so errors point at the row
            turns = grouped.setdefault(conv_id, {})
            if index in turns:
                raise row.error("utterance_idx", f"conversation {conv_id!r} already has utterance "
                                                 f"{index} (row {turns[index].number})")
            turns[index] = row
        return {cid: sorted(turns.items()) for cid, turns in grouped.items()}

    def __iter__(self) -> Iterator[Example]:
        for conv_id, rows in self.conversations().items():
            turns = [unescape(row.text("utterance")) for _, row in rows]
            first = rows[0][1]
            meta = {"emotion": first.text("context", ""), "conv_id": conv_id,
                    "prompt": unescape(first.text("prompt", ""))}
            for t in range(1, len(turns)):
                if not turns[t]:
                    continue
                yield Example(history=[h for h in turns[:t] if h], response=turns[t], is_safe=True,
                              safety_label=CASUAL, source=self.name,
                              id=f"{self.name}:{self.split}:{conv_id}:{rows[t][0]}",
                              meta={**meta, "utterance_idx": rows[t][0]})


@hookimpl
def register_data_sources(register):
    register("empathetic_dialogues", EmpatheticDialoguesSource)
