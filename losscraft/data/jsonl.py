"""Reading JSONL files line by line with errors that name the file and the row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from losscraft.data.text import read_text_checked
from losscraft.errors import DataError


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, Any]]:
    """``(row, record)`` for every non-blank line (rows are 1-based); a line that is not JSON
    raises `DataError` naming the file and row."""
    lines = read_text_checked(path).splitlines()
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield row, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg}", file=str(path), row=row) from None
        except RecursionError:
            raise DataError("JSON nested too deeply to read", file=str(path), row=row) from None


def context_turns(value: Any, *, file: str, row: int, allow_empty: bool = False) -> list[str]:
    """A JSONL ``context`` field as turns (oldest first): a string is one turn, a list of strings
    is kept. Unless ``allow_empty``, the context must have a non-empty last turn. Anything else is
    a `DataError` naming ``file``, ``row`` and the field."""
    if isinstance(value, str) and (value.strip() or allow_empty):
        return [value] if value.strip() else []
    if (isinstance(value, list) and all(isinstance(t, str) for t in value)
            and (allow_empty or (value and value[-1].strip()))):
        return list(value)
    wanted = "a string or a list of strings (turns, oldest first)" if allow_empty else \
        "a non-empty string or a list of strings (turns, oldest first, the last one non-empty)"
    raise DataError(f"expected {wanted}, got {json.dumps(value)[:80]}", file=file, row=row,
                    field="context")
