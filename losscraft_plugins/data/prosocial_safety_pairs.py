"""Data source ``prosocial_safety_pairs``: safe/unsafe (context, response) pairs derived from
ProsocialDialog, for training a safety classifier.

ProsocialDialog has no unsafe *responses*: every gold reply is prosocial and the safety label grades
the *context* — the user's last utterance. So the user's utterance itself is what is unsafe.
From each row, whose rebuilt history is ``[..., utterance]`` with gold reply ``reply`` and context
label ``L`` (see ``prosocial_dialog``), this source yields:

- safe: ``(history, reply)`` — the gold prosocial reply (``gold_responses``);
- unsafe: ``(history[:-1], utterance)`` when ``L`` is at least ``unsafe_from``
  (default ``__needs_caution__``: needs caution or needs intervention);
- safe: ``(history[:-1], utterance)`` when ``L`` is in ``safe_utterance_labels``
  (default ``__casual__``).

Utterances with labels in between (possibly/probably needs caution) are ambiguous and skipped.

- safe but *not* prosocial: ``(history, borrowed)`` for each of ``casual_negatives`` replies
  borrowed from casual contexts of other dialogues (``prosocial_dialog``'s ``casual_negatives``)
  when the context is not casual: a fluent reply that ignores the problem.
"""

from __future__ import annotations

from collections.abc import Iterator

from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import SAFETY_LABELS, Example
from losscraft_plugins.data.prosocial_dialog import ProsocialDialogSource


class ProsocialSafetyPairs:
    """Safe/unsafe pairs from ProsocialDialog: gold replies and casual user utterances are safe,
    user utterances labelled ``unsafe_from`` or worse are unsafe.

    Args:
        path: a local file in the ProsocialDialog schema (default: the shipped sample).
        dataset: instead of ``path``, a hub id (``"allenai/prosocial-dialog"``) or dataset folder.
        config: the hub dataset configuration, if any.
        split: ``train``, ``validation`` or ``test``.
        unsafe_from: the least severe context label whose user utterance counts as unsafe.
        safe_utterance_labels: context labels whose user utterance counts as safe.
        gold_responses: also yield every gold prosocial reply as a safe pair.
        casual_negatives: per non-casual context, replies borrowed from casual contexts, yielded
            as safe, not prosocial pairs (they ignore the problem).
    """

    name = "prosocial_safety_pairs"

    def __init__(self, path: str | None = None, dataset: str | None = None,
                 config: str | None = None, split: str = "train",
                 unsafe_from: str = "__needs_caution__",
                 safe_utterance_labels: list[str] | None = None, gold_responses: bool = True,
                 casual_negatives: int = 0):
        safe = ["__casual__"] if safe_utterance_labels is None else list(safe_utterance_labels)
        for key, labels in (("unsafe_from", [unsafe_from]), ("safe_utterance_labels", safe)):
            unknown = [label for label in labels if label not in SAFETY_LABELS]
            if unknown:
                raise RecipeError(f"unknown safety label(s) {unknown}; expected "
                                  f"{list(SAFETY_LABELS)}", key=key)
        self.unsafe = set(SAFETY_LABELS[SAFETY_LABELS.index(unsafe_from):])
        clash = sorted(self.unsafe & set(safe))
        if clash:
            raise RecipeError(f"{clash} would be both safe and unsafe (unsafe_from is "
                              f"{unsafe_from!r})", key="safe_utterance_labels")
        self.safe_utterances = set(safe)
        self.gold_responses = bool(gold_responses)
        self.source = ProsocialDialogSource(path=path, dataset=dataset, config=config, split=split,
                                            casual_negatives=casual_negatives)

    def __iter__(self) -> Iterator[Example]:
        for ex in self.source:
            meta = {"dialogue_id": ex.meta.get("dialogue_id"), "safety_label": ex.safety_label}
            if self.gold_responses:
                yield Example(history=list(ex.history), response=ex.response, is_safe=True,
                              is_prosocial=ex.is_prosocial,
                              safety_label=ex.safety_label, rots=list(ex.rots), source=self.name,
                              id=f"{ex.id}:reply", meta={**meta, "kind": "gold_reply"})
            for k, borrowed in enumerate(ex.negatives):
                yield Example(history=list(ex.history), response=borrowed, is_safe=True,
                              is_prosocial=False, safety_label=ex.safety_label, source=self.name,
                              id=f"{ex.id}:borrowed{k}", meta={**meta, "kind": "borrowed_reply"})
            label = ex.safety_label
            if label in self.unsafe or label in self.safe_utterances:
                yield Example(history=list(ex.history[:-1]), response=ex.history[-1],
                              is_safe=label not in self.unsafe,
                              is_prosocial=False if label in self.unsafe else None,
                              safety_label=label,
                              rots=list(ex.rots), source=self.name, id=f"{ex.id}:utterance",
                              meta={**meta, "kind": "user_utterance"})


@hookimpl
def register_data_sources(register):
    register("prosocial_safety_pairs", ProsocialSafetyPairs)
