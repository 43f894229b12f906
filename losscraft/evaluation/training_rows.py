"""Every text a recipe trains on, gathered without loading a model: what a held-back set, a
judge's data or a probe must not share.

`recipe_texts` reads a recipe's data the way the trainer does (`load_examples`, each source cut to
its ``limit``): every stage's examples (their histories are also the contexts negative mining
samples from), every replay source's contexts, and the RoT generator's bank. `example_texts` does
the same for any list of examples (a classifier recipe's data, a held-back block).
`recipes_texts` gathers every recipe of a folder (the shipped ``recipes/``) and
`judge_corpus_texts` every row of the judge corpus, the two sides every held-back set and the
judge's data are checked against.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from losscraft.plugins.registry import Registry, get_registry
from losscraft.recipe.schema import Recipe, StageSpec
from losscraft.recipe.instantiate import build_component
from losscraft.types import Example


@dataclass
class Texts:
    """Texts of one side of a comparison: user/context turns, replies (positives and
    negatives), whole histories, and rules of thumb."""

    turns: set[str] = field(default_factory=set)
    replies: set[str] = field(default_factory=set)
    histories: set[tuple[str, ...]] = field(default_factory=set)
    rots: set[str] = field(default_factory=set)

    def add(self, ex: Example) -> None:
        """Add one example's history, reply, negatives and RoTs."""
        history = tuple(t for t in ex.history if t.strip())
        self.turns.update(history)
        if history:
            self.histories.add(history)
        if ex.response.strip():
            self.replies.add(ex.response)
        self.replies.update(n for n in ex.negatives if n.strip())
        self.rots.update(r for r in ex.rots if r.strip())

    def update(self, other: "Texts") -> None:
        self.turns |= other.turns
        self.replies |= other.replies
        self.histories |= other.histories
        self.rots |= other.rots

    @property
    def all_texts(self) -> set[str]:
        """Turns, replies and RoTs together."""
        return self.turns | self.replies | self.rots


def example_texts(examples: Iterable[Example]) -> Texts:
    """The `Texts` of ``examples``."""
    texts = Texts()
    for ex in examples:
        texts.add(ex)
    return texts


def recipe_texts(recipe: Recipe, registry: Registry | None = None) -> Texts:
    """Every text ``recipe`` trains on (see the module doc)."""
    from losscraft.trainer.prepare.stage_data import load_examples

    registry = registry or get_registry()
    texts = Texts()
    for stage in recipe.stages:
        texts.update(example_texts(load_examples(stage, recipe.path, registry)))
        if stage.replay is not None and stage.replay.enabled and stage.replay.data:
            replay = StageSpec(name=f"{stage.name}.replay", data=stage.replay.data, terms=[],
                               key=f"{stage.key}.replay")
            texts.update(example_texts(load_examples(replay, recipe.path, registry)))
    generator = recipe.rot_generator
    if generator is not None and generator.params.get("source"):
        bank = build_component("data_source", type(generator)(
            generator.params["source"], dict(generator.params.get("source_params") or {}),
            f"{generator.key}.source"), recipe.path, registry)
        texts.update(example_texts(ex for ex in bank if ex.rots))
    return texts


def recipes_texts(folder: Path, registry: Registry | None = None) -> Texts:
    """`recipe_texts` of every ``*.toml`` recipe in ``folder`` (default profiles), together."""
    from losscraft.recipe.parse import load_recipe

    registry = registry or get_registry()
    texts = Texts()
    for path in sorted(Path(folder).glob("*.toml")):
        texts.update(recipe_texts(load_recipe(path), registry))
    return texts


def judge_corpus_texts(registry: Registry | None = None,
                       pools: Iterable[str] = ("primary", "second")) -> Texts:
    """Every row of the ``judge_corpus`` data source's ``pools``, all splits."""
    registry = registry or get_registry()
    texts = Texts()
    for pool in pools:
        for split in ("train", "validation", "test"):
            texts.update(example_texts(registry.create("data_source", "judge_corpus",
                                                       {"pool": pool, "split": split})))
    return texts
