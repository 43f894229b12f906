"""``prosocial_dialog``: ProsocialDialog (Kim et al. 2022) in its released schema.

One row per turn pair: ``context``, ``response``, ``rots``, ``safety_label``, ``dialogue_id``,
``response_id``, ... (see ``samples/make_prosocial_sample.py``). Each row becomes one `Example`
whose history is rebuilt from the rows of the same dialogue that come before it (ordered by
``response_id``): their contexts and responses in turn, then this row's context. Every gold response
is prosocial, so ``is_safe=True`` (and ``is_prosocial=True`` for a non-casual context);
``safety_label`` grades the *context*.

Casual contexts [reconstruction, methods.md §1.4]: ``__casual__`` rows stay ordinary safe examples;
with ``casual_negatives=k`` each non-casual context also gets ``k`` responses borrowed from casual
contexts of other dialogues as negatives (they ignore the problem), weighted by the context's
severity (``severity_weights``).

With neither ``path`` nor ``dataset`` it reads the small project-written sample shipped in
``samples/prosocial_dialog_sample.jsonl`` (832 rows, 568 dialogues — 88 templated, one per
scenario of the hand-written bank — and a ``split`` column).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from importlib import resources

from losscraft.data.hub_datasets import load_hf_dataset
from losscraft.errors import DataError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import SAFETY_LABELS, SEVERITY, Example
from losscraft_plugins.data.tables import Row, check_file, read_rows

SAMPLE = "prosocial_dialog_sample.jsonl"
DEFAULT_SEVERITY_WEIGHTS = SEVERITY

_META = ("safety_annotations", "safety_annotation_reasons", "source", "etc", "episode_done",
         "dialogue_id", "response_id")


def _check_labels(labels, key: str) -> None:
    unknown = [label for label in labels if label not in SAFETY_LABELS]
    if unknown:
        raise RecipeError(f"unknown safety label(s) {unknown}; expected {list(SAFETY_LABELS)}",
                          key=key)


class ProsocialDialogSource:
    """ProsocialDialog examples with rebuilt histories.

    Args:
        path: a local JSONL/JSON/CSV/Parquet file in the ProsocialDialog schema (CSV list cells as
            JSON). Rows with a ``split`` column are filtered by ``split``; files without one are
            taken whole.
        dataset: instead of ``path``, a hub id (``"allenai/prosocial-dialog"``) or a local dataset
            folder, loaded through `losscraft.data.hub_datasets.load_hf_dataset`.
        config: the hub dataset configuration, if any.
        split: ``train``, ``validation`` or ``test``.
        safety_labels: keep only contexts with these labels.
        min_safety_label: keep only contexts at least this severe (see `SAFETY_LABELS`).
        casual_negatives: responses borrowed from ``__casual__`` contexts, per non-casual context.
        severity_weights: label -> weight of those borrowed negatives (default 0.25 per level).
        seed: seeds the (per-example, order-independent) choice of borrowed negatives.

    To keep only the first N examples, use the recipe's core key ``limit = N``.
    """

    def __init__(self, *, path: str | None = None, dataset: str | None = None,
                 config: str | None = None, split: str = "train",
                 safety_labels: list[str] | None = None, min_safety_label: str | None = None,
                 casual_negatives: int = 0, severity_weights: dict[str, float] | None = None,
                 seed: int = 0):
        if path is not None and dataset is not None:
            raise RecipeError("set either 'path' (a local file) or 'dataset' (a hub id or "
                              "dataset folder), not both", key="dataset")
        if path is not None:
            check_file(path, param="path")
        _check_labels(safety_labels or [], "safety_labels")
        _check_labels([min_safety_label] if min_safety_label else [], "min_safety_label")
        weights = {**DEFAULT_SEVERITY_WEIGHTS, **(severity_weights or {})}
        _check_labels(weights, "severity_weights")
        if casual_negatives < 0:
            raise RecipeError("must be 0 or more", key="casual_negatives")
        self.path, self.dataset, self.config, self.split = path, dataset, config, split
        keep = set(safety_labels or SAFETY_LABELS)
        if min_safety_label:
            keep &= set(SAFETY_LABELS[SAFETY_LABELS.index(min_safety_label):])
        self.keep, self.casual_negatives, self.weights = keep, casual_negatives, weights
        self.seed = seed
        self._examples: list[Example] | None = None

    def _rows(self) -> Iterator[Row]:
        if self.dataset is not None:
            data = load_hf_dataset(self.dataset, split=self.split, config=self.config)
            yield from (Row(r, file=self.dataset, number=i) for i, r in enumerate(data, 1))
            return
        path = self.path or str(resources.files("losscraft_plugins.data.samples") / SAMPLE)
        found: set[str] = set()
        for row in read_rows(path, param="path"):
            if row.has("split"):
                found.add(str(row.data["split"]))
                if row.data["split"] != self.split:
                    continue
            yield row
        if found and self.split not in found:
            raise RecipeError(f"{path} has no rows of split {self.split!r} (it has "
                              f"{sorted(found)})", key="split")

    def _dialogue_examples(self, turns: list[tuple[int, Row]]) -> Iterator[Example]:
        turns.sort(key=lambda t: t[0])
        history: list[str] = []
        for k, (response_id, row) in enumerate(turns):
            if k and turns[k - 1][0] == response_id:
                raise row.error("response_id", f"response_id {response_id} appears twice in "
                                f"dialogue {row.data['dialogue_id']!r}")
            context, response = row.text("context"), row.text("response")
            label = row.text("safety_label")
            if label not in SAFETY_LABELS:
                raise row.error("safety_label", f"unknown label {label!r}; expected one of "
                                f"{list(SAFETY_LABELS)}")
            meta = {key: row.data.get(key) for key in _META}
            yield Example(history=history + [context], response=response, is_safe=True,
                          is_prosocial=None if label == "__casual__" else True, safety_label=label, rots=row.strings("rots"), source="prosocial_dialog",
                          id=f"{row.data['dialogue_id']}-{response_id}",
                          meta={**meta, "split": self.split})
            history = history + [context, response]

    def _build(self) -> list[Example]:
        dialogues: dict[object, list[tuple[int, Row]]] = {}
        for row in self._rows():
            turn = (row.integer("response_id"), row)
            dialogues.setdefault(str(row.get("dialogue_id")), []).append(turn)
        examples = [ex for turns in dialogues.values() for ex in self._dialogue_examples(turns)]
        if self.casual_negatives:
            self._borrow_casual(examples)
        kept = [ex for ex in examples if ex.safety_label in self.keep]
        return kept

    def _borrow_casual(self, examples: list[Example]) -> None:
        pool = list({ex.response: ex.meta["dialogue_id"] for ex in examples
                     if ex.safety_label == "__casual__"}.items())
        if not pool:
            raise DataError(f"casual_negatives={self.casual_negatives} but split {self.split!r} "
                            "has no __casual__ contexts to borrow responses from",
                            file=self.path or self.dataset or SAMPLE, field="safety_label")
        for ex in examples:
            if ex.safety_label == "__casual__":
                continue
            rng = random.Random(f"{self.seed}:{ex.id}")
            picked: dict[str, None] = {}
            for _ in range(20 * self.casual_negatives):  # rejection sampling: pool may be huge
                response, dialogue = pool[rng.randrange(len(pool))]
                if dialogue != ex.meta["dialogue_id"]:
                    picked[response] = None
                if len(picked) == self.casual_negatives:
                    break
            ex.negatives = list(picked)
            ex.negative_weights = [self.weights[ex.safety_label]] * len(ex.negatives)

    def __iter__(self) -> Iterator[Example]:
        if self._examples is None:
            self._examples = self._build()
        return iter(self._examples)


@hookimpl
def register_data_sources(register):
    register("prosocial_dialog", ProsocialDialogSource)
