"""Reading local JSONL / JSON / CSV / Parquet files into numbered rows with checked fields.

The data sources in this package share it: `read_rows` opens a file (format from its extension or
``format=``) and yields `Row` objects; a `Row` knows its file and 1-based row number (the line for
JSONL, the record after the header for CSV, the record for Parquet and JSON arrays), so every
malformed value becomes a `DataError` naming the file, the row and the field.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from losscraft.errors import DataError, RecipeError

FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_TRUE = {"true", "1", "yes", "safe", "__ok__"}
_FALSE = {"false", "0", "no", "unsafe", "__notok__"}


def check_file(path: str | Path, *, param: str = "path", format: str | None = None) -> str:
    """Cheap constructor-time check: ``path`` exists and has a readable format. Returns the
    format name; raises `RecipeError` naming ``param`` (or ``"format"``) otherwise."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise RecipeError(f"data file {p} does not exist", key=param)
    fmt = format or FORMATS.get(p.suffix.lower())
    if fmt not in set(FORMATS.values()):
        raise RecipeError(f"cannot tell the format of {p}: use a .jsonl/.json/.csv/.parquet file "
                          "or set format= to jsonl, json, csv or parquet",
                          key="format" if format else param)
    return fmt


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


class Row:
    """One record of a data file, with typed accessors that raise `DataError` on bad values."""

    def __init__(self, data: dict[str, Any], *, file: str, number: int):
        self.data, self.file, self.number = data, file, number

    def error(self, field: str | None, message: str) -> DataError:
        return DataError(message, file=self.file, row=self.number, field=field)

    def has(self, field: str) -> bool:
        return not _missing(self.data.get(field))

    def get(self, field: str, default: Any = ...) -> Any:
        """The raw value; a missing/empty value raises unless ``default`` is given."""
        if self.has(field):
            return self.data[field]
        if default is ...:
            what = "is empty" if field in self.data else "is missing (no such column/key)"
            raise self.error(field, f"required field {what}; columns are {sorted(self.data)}")
        return default

    def text(self, field: str, default: Any = ...) -> str | None:
        if default is not ... and not self.has(field):
            return default
        value = self.get(field)
        if not isinstance(value, (str, int, float)):
            raise self.error(field, f"expected text, got {type(value).__name__}")
        return str(value)

    def integer(self, field: str, default: Any = ..., allowed: range | None = None) -> int | None:
        if default is not ... and not self.has(field):
            return default
        value = self.get(field)
        try:
            number = float(value)
            if not number.is_integer():
                raise ValueError
        except (TypeError, ValueError):
            raise self.error(field, f"expected an integer, got {value!r}") from None
        if allowed is not None and int(number) not in allowed:
            raise self.error(field, f"expected {allowed.start}..{allowed.stop - 1}, got {value!r}")
        return int(number)

    def boolean(self, field: str) -> bool | None:
        """True/False from booleans, 0/1 and words (true/false, yes/no, safe/unsafe,
        __ok__/__notok__); missing -> ``None``."""
        value = self.get(field, None)
        if value is None or isinstance(value, bool):
            return value
        word = str(int(value) if isinstance(value, (int, float)) else value).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise self.error(field, f"expected a boolean (true/false, 1/0, safe/unsafe), got {value!r}")

    def numbers(self, field: str) -> list[float] | None:
        """A list of floats from a list value or a JSON list (CSV cells); missing -> ``None``."""
        value = self.get(field, None)
        try:
            if isinstance(value, str):
                value = json.loads(value)
            if value is None or isinstance(value, (int, float)):
                return None if value is None else [float(value)]
            return [float(v) for v in value]
        except (TypeError, ValueError):  # JSONDecodeError is a ValueError
            raise self.error(field, f"expected a list of numbers, got {value!r}") from None

    def strings(self, field: str, *, separator: str | None = None) -> list[str]:
        """A list of strings from a list value, a JSON/Python list literal (CSV cells), or a plain
        string (split on ``separator`` if given, else one item); missing -> ``[]``."""
        value = self.get(field, None)
        if value is None:
            return []
        if isinstance(value, str):
            stripped = value.strip()
            if stripped.startswith("["):
                try:
                    value = json.loads(stripped)
                except json.JSONDecodeError:
                    try:
                        value = ast.literal_eval(stripped)
                    except (ValueError, SyntaxError):
                        raise self.error(field, f"malformed list {value[:60]!r}") from None
            else:
                return [s for s in value.split(separator)] if separator else [value]
        if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
            raise self.error(field, f"expected a list of strings, got {type(value).__name__}")
        items = list(value.tolist() if hasattr(value, "tolist") else value)
        if not all(isinstance(s, str) for s in items):
            raise self.error(field, "expected a list of strings, found a non-string item")
        return items


def read_rows(path: str | Path, *, format: str | None = None, param: str = "path") -> Iterator[Row]:
    """Yield the rows of a local data file; see the module docstring for numbering."""
    fmt = check_file(path, param=param, format=format)
    p = Path(path).expanduser()
    file = str(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(p).to_pylist()
        except Exception as e:  # pyarrow raises several unrelated types for corrupt files
            raise DataError(f"not a readable Parquet file: {e}", file=file) from e
        yield from (Row(r, file=file, number=i) for i, r in enumerate(records, 1))
        return
    from losscraft.data.text import read_text_checked

    with io.StringIO(read_text_checked(p), newline="") as f:
        if fmt == "csv":
            for i, record in enumerate(csv.DictReader(f), 1):
                if None in record:
                    raise DataError(f"row has {len(record) - 1 + len(record[None])} cells but "
                                    f"the header names {len(record) - 1}", file=file, row=i)
                yield Row(record, file=file, number=i)
            return
        text_start = f.read(1024).lstrip()[:1]
        f.seek(0)
        if fmt == "json" and text_start == "[":
            try:
                records = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON at line {e.lineno}: {e.msg}", file=file) from e
            for i, record in enumerate(records, 1):
                if not isinstance(record, dict):
                    raise DataError("expected a JSON object", file=file, row=i)
                yield Row(record, file=file, number=i)
            return
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg}, column {e.colno})", file=file,
                                row=line_no) from e
            if not isinstance(record, dict):
                raise DataError("expected a JSON object on each line", file=file, row=line_no)
            yield Row(record, file=file, number=line_no)
