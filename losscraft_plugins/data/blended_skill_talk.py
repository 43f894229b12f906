"""Data source ``blended_skill_talk``: BlendedSkillTalk (Smith et al., 2020), conversations that
blend persona, empathy and knowledge.

Rows have the Hugging Face schema: ``personas`` (two persona texts), ``additional_context``,
``previous_utterance`` (two seed turns), ``context`` (the seed's source dataset),
``free_messages`` (the unguided speaker), ``guided_messages`` (the speaker shown suggestions),
``suggestions``, ``guided_chosen_suggestions`` and ``label_candidates``. A conversation is
``previous_utterance[0], previous_utterance[1], free[0], guided[0], free[1], guided[1], ...``.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import zip_longest

from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import CASUAL, check_path, sample_path, split_rows


class BlendedSkillTalkSource:
    """BlendedSkillTalk conversations, one example per free or guided message, with every earlier
    turn (the two seed turns included) as history.

    Args:
        path: a local ``.jsonl``/``.json``/``.csv``/``.parquet`` file (taken as the split), a
            folder with files named after the splits (``train.jsonl``, ...) or a dataset
            folder/hub id loaded through ``datasets``. Defaults to the project's small sample.
        split: ``train``, ``validation`` or ``test`` (ignored for a single file).
        guided_only: only the guided speaker's messages become responses (what ParlAI's BST
            teacher trains on); by default both speakers' messages do.

    Every example is a gold human turn: ``is_safe=True``, ``safety_label="__casual__"``;
    ``meta`` holds ``personas``, ``context``, ``additional_context`` and ``speaker``
    (``free``/``guided``).
    """

    name = "blended_skill_talk"

    def __init__(self, path: str | None = None, split: str = "train", guided_only: bool = False):
        if not isinstance(split, str) or not split:
            raise RecipeError(f"expected a split name, got {split!r}", key="split")
        self.path = check_path(path if path is not None else sample_path("blended_skill_talk"))
        self.split, self.guided_only = split, bool(guided_only)

    def __iter__(self) -> Iterator[Example]:
        for row in split_rows(self.path, self.split):
            seed = [t.strip() for t in row.strings("previous_utterance")]
            free, guided = row.strings("free_messages"), row.strings("guided_messages")
            if not free and not guided:
                raise row.error("free_messages", "the row has no free or guided messages")
            turns = [(t.strip(), "seed") for t in seed]
            for f, g in zip_longest(free, guided):
                turns += [(m.strip(), who) for m, who in ((f, "free"), (g, "guided"))
                          if m is not None]
            meta = {"personas": row.strings("personas"), "context": row.text("context", ""),
                    "additional_context": row.text("additional_context", "")}
            for t, (text, speaker) in enumerate(turns):
                if speaker == "seed" or t == 0 or not text:
                    continue
                if self.guided_only and speaker != "guided":
                    continue
                yield Example(history=[h for h, _ in turns[:t] if h], response=text, is_safe=True,
                              safety_label=CASUAL, source=self.name,
                              id=f"{self.name}:{self.split}:{row.number}:{t}",
                              meta={**meta, "speaker": speaker})


@hookimpl
def register_data_sources(register):
    register("blended_skill_talk", BlendedSkillTalkSource)
