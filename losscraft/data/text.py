"""Reading a data file as text with a decoding error that names the file, row and column."""

from __future__ import annotations

from pathlib import Path

from losscraft.errors import DataError


def read_text_checked(path: Path | str) -> str:
    """The UTF-8 text of ``path`` (a leading BOM is dropped); bytes that are not UTF-8 raise
    `DataError` naming the file and the 1-based line (row) and column where they are."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        row = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); "
                        "re-save the file as UTF-8", file=str(path), row=row) from None
