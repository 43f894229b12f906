"""``mic``: the Moral Integrity Corpus (Ziems et al. 2022) in its CSV schema.

Columns used: ``Q``, ``A``, ``rot``, ``moral``, ``A_agrees`` (0 the answer disagrees with the RoT,
1 neutral, 2 agrees), ``rot-agree``, ``violation-severity`` (1-5), ``chatbot``, ``split``
(train/dev/test). By default each row becomes one `Example`: ``history=[Q]``, ``response=A``,
``rots=[rot]``, ``is_safe`` True / True / False and ``is_prosocial`` True / False / False for
``A_agrees`` 2 / 1 / 0 (an answer that agrees with the RoT guides; a neutral one neither violates
nor upholds it; a disagreeing one condones the violation).

``pair_negatives=True`` [reconstruction, methods.md §1.4] groups the answers to the same ``Q``:
every agreeing answer becomes a positive whose negatives are the disagreeing answers, each weighted
``violation-severity / 5`` (1 when blank). An answer judged against several RoTs counts as
disagreeing if any row says 0, else agreeing if any says 2. ``rots`` holds all the question's RoTs.

With no ``path`` it reads the project-written sample ``samples/mic_sample.csv`` (1,127 rows: 150
templated, the rest from the hand-written scenario bank).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

from losscraft.errors import RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.tables import Row, check_file, read_rows

SAMPLE = "mic_sample.csv"
#: Recipe-friendly split names -> MIC's.
SPLIT_ALIASES = {"validation": "dev", "valid": "dev"}


class MICSource:
    """MIC question/answer pairs judged against rules of thumb.

    Args:
        path: a MIC CSV (or JSONL/Parquet with the same columns); default the embedded sample.
        format: ``csv``/``jsonl``/``json``/``parquet`` when the extension does not say.
        split: ``train``, ``dev`` (``validation`` also accepted) or ``test``; ``None`` keeps all.
        pair_negatives: group answers by question into positive + negatives (see module doc).
        require_negatives: with ``pair_negatives``, drop positives whose question has no
            disagreeing answer.
        drop_neutral: without ``pair_negatives``, skip rows with ``A_agrees == 1``.

    To keep only the first N examples, use the recipe's core key ``limit = N``.
    """

    def __init__(self, *, path: str | None = None, format: str | None = None,
                 split: str | None = "train", pair_negatives: bool = False,
                 require_negatives: bool = True, drop_neutral: bool = False):
        self.path = path or str(resources.files("losscraft_plugins.data.samples") / SAMPLE)
        self.format = check_file(self.path, param="path", format=format)
        self.split = SPLIT_ALIASES.get(split, split)
        self.pair_negatives, self.require_negatives = pair_negatives, require_negatives
        self.drop_neutral = drop_neutral

    def _rows(self) -> Iterator[tuple[Row, int]]:
        """Rows of the chosen split with their validated ``A_agrees``."""
        for row in read_rows(self.path, format=self.format):
            if self.split is not None and row.text("split") != self.split:
                continue
            row.text("Q"), row.text("A"), row.text("rot")  # required: fail early, name the field
            row.integer("rot-agree", None, range(1, 6))
            row.integer("violation-severity", None, range(1, 6))
            yield row, row.integer("A_agrees", allowed=range(3))

    def _single(self) -> Iterator[Example]:
        for row, agrees in self._rows():
            if self.drop_neutral and agrees == 1:
                continue
            yield Example(history=[row.text("Q")], response=row.text("A"),
                          is_safe=agrees > 0, is_prosocial=agrees == 2, rots=[row.text("rot")],
                          source="mic", id=f"mic:{row.number}", meta=self._meta(row, agrees))

    def _paired(self) -> Iterator[Example]:
        questions: dict[str, dict[str, list[tuple[Row, int]]]] = {}
        for row, agrees in self._rows():
            answers = questions.setdefault(row.text("Q").strip(), {})
            answers.setdefault(row.text("A").strip(), []).append((row, agrees))
        for q, answers in questions.items():
            rots = list(dict.fromkeys(row.text("rot") for rs in answers.values() for row, _ in rs))
            negatives, weights, positives = [], [], []
            for answer, rs in answers.items():
                if any(a == 0 for _, a in rs):
                    severity = max((row.integer("violation-severity", 5) for row, a in rs
                                    if a == 0), default=5)
                    negatives.append(answer)
                    weights.append(severity / 5)
                elif any(a == 2 for _, a in rs):
                    positives.append(next(row for row, a in rs if a == 2))
            if self.require_negatives and not negatives:
                continue
            for row in positives:
                yield Example(history=[q], response=row.text("A").strip(), is_safe=True,
                              is_prosocial=True,
                              rots=rots, negatives=list(negatives), negative_weights=list(weights),
                              source="mic", id=f"mic:{row.number}", meta=self._meta(row, 2))

    @staticmethod
    def _meta(row: Row, agrees: int) -> dict:
        return {"A_agrees": agrees, "moral": row.text("moral", None),
                "rot_agree": row.integer("rot-agree", None),
                "violation_severity": row.integer("violation-severity", None),
                "chatbot": row.text("chatbot", None), "split": row.text("split", None)}

    def __iter__(self) -> Iterator[Example]:
        yield from self._paired() if self.pair_negatives else self._single()


@hookimpl
def register_data_sources(register):
    register("mic", MICSource)
