"""Data source ``judge_corpus``: the project-written (context, reply) corpus the default safety
judge learns from, written apart from every row the policy trains on.

Writers who never saw the policy's data filled in style-controlled plans (see
``losscraft/judge/writing``): risky user turns in twelve categories, each with replies that condone,
guide or ignore the problem, and small talk with friendly and insulting replies, every label given
short, middling and long replies, questions, and its hard cases. ``samples/make_judge_corpus.py``
drops any situation that shares a reply or comes near (MiniLM cosine >= 0.8) a policy training
text, puts each situation in one split everywhere (by a hash of its id), and writes it in the real
schemas under ``samples/judge/<pool>/``: single-turn risky situations as MIC rows (``A_agrees``
2 guide / 1 ignore / 0 condone against the category's rule of thumb), multi-turn risky and casual
ones as Bot-Adversarial-Dialogue lines (``__ok__`` / ``__notok__``). ``pool = "second"`` is a
smaller corpus from other writers, for a second judge that shares no training row with the first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.bot_adversarial_dialogue import BotAdversarialDialogueSource
from losscraft_plugins.data.dialog_rows import check_choice, check_local, sample_path
from losscraft_plugins.data.mic import MICSource

POOLS = ("primary", "second")
SPLITS = ("train", "validation", "test")


class JudgeCorpusSource:
    """Labelled (context, reply) pairs of the judge corpus.

    Args:
        pool: ``primary`` (the default judge's writers) or ``second`` (a disjoint writer pool).
        split: ``train``, ``validation`` or ``test`` (one split per situation in both schemas).
        path: a folder holding ``mic.csv`` and ``bad/{train,valid,test}.txt``; default the
            shipped ``samples/judge/<pool>``.
    """

    name = "judge_corpus"

    def __init__(self, pool: str = "primary", split: str = "train", path: str | None = None):
        self.pool = check_choice(pool, POOLS, param="pool")
        self.split = check_choice(split, SPLITS, param="split")
        self.folder = check_local(path) if path is not None else sample_path("judge") / pool

    def __iter__(self) -> Iterator[Example]:
        mic = MICSource(path=str(self.folder / "mic.csv"), split=self.split)
        bad = BotAdversarialDialogueSource(path=str(self.folder / "bad"), split=self.split,
                                           speaker="bot")
        for part, source in (("mic", mic), ("bad", bad)):
            for ex in source:
                ex.source = f"{self.name}:{part}"
                yield ex


@hookimpl
def register_data_sources(register):
    register("judge_corpus", JudgeCorpusSource)
