"""Data source ``persona_chat``: PersonaChat (Zhang et al., 2018), chit-chat between two people
playing given personas, in the ``bavard/personachat_truecased`` schema.

Each row is one reply of the persona speaker: ``personality`` (persona sentences), ``history``
(the conversation so far, oldest first), ``candidates`` (distractor replies with the gold reply
last), ``conv_id`` and ``utterance_idx``.
"""

from __future__ import annotations

from collections.abc import Iterator

from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import CASUAL, check_path, sample_path, split_rows


class PersonaChatSource:
    """PersonaChat replies, one example per row: the history and the gold (last) candidate.

    Args:
        path: a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file (taken as the split), a
            folder with files named after the splits (``train.jsonl``, ``validation.jsonl``) or a
            dataset folder/hub id loaded through ``datasets``. Defaults to the project's sample.
        split: ``train`` or ``validation`` (ignored for a single file).
        candidates_as_negatives: put the distractor candidates in ``Example.negatives``. Off by
            default: distractors are replies from *other* conversations, i.e. off-topic rather
            than unsafe, which is not what the contrastive safety objectives expect.

    Every example is a gold human turn: ``is_safe=True``, ``safety_label="__casual__"``;
    ``meta`` holds ``personality``, ``conv_id`` and ``utterance_idx``.
    """

    name = "persona_chat"

    def __init__(self, path: str | None = None, split: str = "train",
                 candidates_as_negatives: bool = False):
        if not isinstance(split, str) or not split:
            raise RecipeError(f"expected a split name, got {split!r}", key="split")
        self.path = check_path(path if path is not None else sample_path("persona_chat"))
        self.split, self.candidates_as_negatives = split, bool(candidates_as_negatives)

    def __iter__(self) -> Iterator[Example]:
        for row in split_rows(self.path, self.split):
            candidates = row.strings("candidates")
            if not candidates or not candidates[-1].strip():
                raise row.error("candidates", "expected a list ending with the gold reply")
            gold = candidates[-1].strip()
            history = row.strings("history")
            conv_id = row.integer("conv_id", None)
            turn = row.integer("utterance_idx", None)
            meta = {"personality": row.strings("personality"), "conv_id": conv_id,
                    "utterance_idx": turn}
            key = f"{conv_id}:{turn}" if conv_id is not None and turn is not None else row.number
            negatives = [c for c in candidates[:-1] if c.strip() and c.strip() != gold] \
                if self.candidates_as_negatives else []
            yield Example(history=history, response=gold, is_safe=True, safety_label=CASUAL,
                          negatives=negatives,
                          source=self.name, id=f"{self.name}:{self.split}:{key}", meta=meta)


@hookimpl
def register_data_sources(register):
    register("persona_chat", PersonaChatSource)
