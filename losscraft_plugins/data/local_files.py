"""``local_files``: dialog examples from any local JSONL / JSON / CSV / Parquet file.

Each row becomes one `Example`; the ``*_field`` parameters say which column holds what. A recipe:

    [[stages.data]]
    plugin = "local_files"
    path = "data/my_dialogs.csv"
    history_field = "context"
    history_separator = " || "     # the context column holds all turns in one string
    is_safe_field = "label"        # true/false, 1/0, safe/unsafe, __ok__/__notok__
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from losscraft.errors import DataError, RecipeError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.types import Example
from losscraft_plugins.data.tables import check_file, read_rows

_OPTIONAL_DEFAULTS = {"is_safe_field": "is_safe", "safety_label_field": "safety_label",
                      "rots_field": "rots", "negatives_field": "negatives",
                      "negative_weights_field": "negative_weights", "id_field": "id"}


class LocalFilesSource:
    """Examples read row by row from one local file.

    Args:
        path: the data file (``.jsonl``, ``.json``, ``.csv`` or ``.parquet``).
        format: ``jsonl``/``json``/``csv``/``parquet`` when the extension does not say.
        history_field: column with the dialog history: a list of turns (oldest first) or a string.
        response_field: column with the reply to learn.
        history_separator: splits a string history into turns (``None``: the string is one turn).
        is_safe_field, safety_label_field, rots_field, negatives_field, negative_weights_field,
        id_field: optional columns; rows without them get the `Example` defaults. A column named
            here that no row has is an error, unless it is the default name. Lists in CSV cells
            are JSON (``["a", "b"]``) or a single plain string. ``None`` ignores the column.
        split: keep only rows whose ``split_field`` equals this (``None``: keep all rows).
        split_field: column holding each row's split.

    To read only the first N examples, use the recipe's core key ``limit = N`` (every data source
    has it).
    """

    def __init__(self, *, path: str, format: str | None = None, history_field: str = "history",
                 response_field: str = "response", history_separator: str | None = None,
                 is_safe_field: str | None = "is_safe",
                 safety_label_field: str | None = "safety_label",
                 rots_field: str | None = "rots", negatives_field: str | None = "negatives",
                 negative_weights_field: str | None = "negative_weights",
                 id_field: str | None = "id", split: str | None = None,
                 split_field: str = "split"):
        self.format = check_file(path, param="path", format=format)
        self.path, self.split, self.split_field = path, split, split_field
        self.history_field, self.response_field = history_field, response_field
        self.history_separator = history_separator
        given = {"is_safe_field": is_safe_field, "safety_label_field": safety_label_field,
                 "rots_field": rots_field, "negatives_field": negatives_field,
                 "negative_weights_field": negative_weights_field, "id_field": id_field}
        self.fields = {k.removesuffix("_field"): v for k, v in given.items()}
        self._must_appear = {v for k, v in given.items() if v and v != _OPTIONAL_DEFAULTS[k]}

    def _example(self, row) -> Example:
        f = self.fields
        row.get(self.history_field)  # raises DataError naming the field when it is missing
        history = row.strings(self.history_field, separator=self.history_separator)
        negatives = row.strings(f["negatives"]) if f["negatives"] else []
        weights = row.numbers(f["negative_weights"]) if f["negative_weights"] else None
        if weights is not None and len(weights) != len(negatives):
            raise row.error(f["negative_weights"], f"{len(weights)} weights for "
                            f"{len(negatives)} negatives")
        response = row.get(self.response_field)
        if not isinstance(response, str):  # a number here is a shifted column, not a reply
            raise row.error(self.response_field, f"expected text, got {type(response).__name__} "
                                                 f"{response!r:.40}")
        return Example(
            history=history, response=response,
            is_safe=row.boolean(f["is_safe"]) if f["is_safe"] else None,
            safety_label=row.text(f["safety_label"], None) if f["safety_label"] else None,
            rots=row.strings(f["rots"]) if f["rots"] else [],
            negatives=negatives, negative_weights=weights, source="local_files",
            id=(row.text(f["id"], None) if f["id"] else None)
            or f"{Path(self.path).stem}:{row.number}")

    def __iter__(self) -> Iterator[Example]:
        seen: set[str] = set()
        for row in read_rows(self.path, format=self.format):
            seen.update(k for k in row.data if row.has(k))
            if self.split is not None and row.text(self.split_field) != self.split:
                continue
            yield self._example(row)
        missing = sorted(self._must_appear - seen)
        if missing:
            raise DataError(f"no row has the column(s) {missing} named in the recipe; columns "
                            f"are {sorted(seen)}", file=str(self.path), field=missing[0])


@hookimpl
def register_data_sources(register):
    register("local_files", LocalFilesSource)
