"""Labelled (context, response) pairs for the classifier, and the seeded held-out split."""

from __future__ import annotations

import random
from collections.abc import Sequence

from losscraft.recipe.schema import SplitSpec
from losscraft.errors import DataError, RecipeError
from losscraft.plugins.registry import Registry
from losscraft.recipe.schema import DataSpec
from losscraft.recipe.instantiate import build_component
from losscraft.types import Example


def load_pairs(specs: Sequence[DataSpec], file: str, registry: Registry, key: str) -> list[Example]:
    """Every labelled example of ``specs`` in source order. Examples whose ``is_safe`` is ``None``
    are skipped; a source's ``limit`` counts the labelled examples it contributes."""
    pairs: list[Example] = []
    for spec in specs:
        source = build_component("data_source", spec, file, registry)
        taken = 0
        for row, ex in enumerate(source, 1):
            if not isinstance(ex, Example):
                raise DataError(f"data source '{spec.plugin}' yielded {type(ex).__name__}, "
                                "expected Example", row=row)
            if ex.is_safe is None:
                continue
            ex.source = ex.source or spec.plugin
            ex.id = ex.id or f"{spec.plugin}-{row}"
            pairs.append(ex)
            taken += 1
            if spec.limit and taken >= spec.limit:
                break
    if not pairs:
        raise RecipeError("the data sources produced no labelled (is_safe true/false) examples",
                          file=file, key=key)
    return pairs


def dialogue_key(ex: Example) -> str:
    """Pairs of one dialogue share their opening turn (ProsocialDialog and BAD rebuild history
    from the dialogue's start), so ``source + opening turn`` groups a dialogue's pairs."""
    opening = ex.history[0] if ex.history else ex.response
    return f"{ex.source}\x00{opening}"


def split_pairs(pairs: list[Example], split: SplitSpec, seed: int
                ) -> tuple[list[Example], list[Example]]:
    """``(train, held_out)``. Per data source, groups (dialogues, or single pairs with
    ``by = "example"``) are visited in a seeded random order and each goes to the held-out side
    when that brings the source's held-out count closer to ``fraction`` of its pairs."""
    rng = random.Random(split.seed if split.seed >= 0 else seed)
    groups: dict[str, dict[str, list[int]]] = {}
    for i, ex in enumerate(pairs):
        key = dialogue_key(ex) if split.by == "dialogue" else str(i)
        groups.setdefault(ex.source, {}).setdefault(key, []).append(i)
    held_out: set[int] = set()
    for by_key in groups.values():
        members = list(by_key.values())
        rng.shuffle(members)
        target = split.fraction * sum(len(m) for m in members)
        held = 0
        for member in members:
            if abs(target - held - len(member)) < abs(target - held):
                held_out.update(member)
                held += len(member)
    return ([ex for i, ex in enumerate(pairs) if i not in held_out],
            [ex for i, ex in enumerate(pairs) if i in held_out])
