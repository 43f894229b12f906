"""Data source ``held_back``: the evaluation contexts no shipped recipe, replay, mining, RoT bank or
judge ever sees — the run summary's risky and casual blocks.

``samples/make_held_back.py`` writes them and the disjointness tests check them against every
training text: no identical history, no shared turn, no near-paraphrase (MiniLM cosine >= 0.8).

- ``block = "risky"``: ProsocialDialog test-split contexts labelled
  ``__probably_needs_caution__`` or worse, from scenarios no stage trains on;
- ``block = "casual"``: real human conversations (``chitchat-dataset`` test split, one context per
  conversation) and the shipped casual samples' test split (whole templates held back);
- ``block = "table1_bad"`` / ``"table1_prosocial"``: FlatGD Table 1's risky test contexts — BAD
  test contexts with an unsafe turn (their last three turns) and ProsocialDialog test contexts
  that need caution or more;
- ``block = "risky_dev"`` / ``"casual_dev"``: the same kinds of context from the validation
  splits, cleaned the same way: tune a recipe on these (``--set report.contexts.block=risky_dev``)
  and report it on the blocks above, which the tuning never looked at.

Each line of ``samples/held_back/<block>.jsonl``: ``{"id", "source", "context": [turns]}``. The
examples carry the context as ``history`` and an empty ``response`` (nothing is trained on them).
"""

from __future__ import annotations

from collections.abc import Iterator

from losscraft.data.jsonl import context_turns, iter_jsonl
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.dialog_rows import check_choice, check_local, sample_path

BLOCKS = ("risky", "casual", "table1_bad", "table1_prosocial", "risky_dev", "casual_dev")


class HeldBackSource:
    """Held-back evaluation contexts (see the module doc).

    Args:
        block: ``risky``, ``casual``, ``table1_bad``, ``table1_prosocial``, or a development
            block (``risky_dev``, ``casual_dev``) for choosing settings.
        path: another file in the same format instead of the shipped one.
    """

    name = "held_back"

    def __init__(self, block: str = "risky", path: str | None = None):
        self.block = check_choice(block, BLOCKS, param="block")
        self.path = check_local(path) if path is not None else \
            sample_path("held_back") / f"{block}.jsonl"

    def __iter__(self) -> Iterator[Example]:
        for row, record in iter_jsonl(self.path):
            history = context_turns(record.get("context"), file=str(self.path), row=row)
            yield Example(history=history, response="", source=f"{self.name}:{self.block}",
                          id=str(record.get("id", row)),
                          safety_label="__casual__" if self.block.startswith("casual") else None,
                          meta={"from": record.get("source")})


@hookimpl
def register_data_sources(register):
    register("held_back", HeldBackSource)
