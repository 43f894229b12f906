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
