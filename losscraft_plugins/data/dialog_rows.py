"""Shared plumbing of the dialog data sources: where the samples are, checking a ``path``
parameter, and reading one split as numbered `Row`s from a local file, a folder of split files or
a Hugging Face hub id.

Not a plugin itself (no entry point); the source modules next to it import it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from losscraft.errors import RecipeError
from losscraft_plugins.data.tables import FORMATS, Row, read_rows

#: Folder of the project-written samples (one sub-folder per dataset).
SAMPLES = Path(__file__).parent / "samples"
#: Labels of ParlAI's safety tasks (BAD, Build-it Break-it Fix-it).
PARLAI_LABELS = {"__ok__": True, "__notok__": False}
#: Every casual example is labelled as ProsocialDialog's casual class.
CASUAL = "__casual__"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def sample_path(name: str) -> Path:
    """The embedded sample folder ``name`` (e.g. ``"daily_dialog"``)."""
    return SAMPLES / name


def check_local(path: str | Path, *, param: str = "path") -> Path:
    """An existing local file or folder, else `RecipeError` naming ``param``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise RecipeError(f"{p} does not exist", key=param)
    return p


def check_path(path: str | Path, *, param: str = "path") -> str:
    """An existing local file/folder, or something shaped like a hub id (``name`` or
    ``owner/name``, checked when loaded); anything else raises `RecipeError` naming ``param``."""
    text = str(path)
    p = Path(text).expanduser()
    if p.exists():
        return str(p)
    if _HUB_ID.fullmatch(text) and p.suffix.lower() not in FORMATS:
        return text
    raise RecipeError(f"{p} does not exist (expected a local file or folder, or a hub dataset id "
                      "like 'owner/name')", key=param)


def check_choice(value: str, choices: tuple[str, ...], *, param: str) -> str:
    """``value`` if it is one of ``choices``, else `RecipeError` naming ``param``."""
    if value not in choices:
        raise RecipeError(f"expected one of {', '.join(choices)}, got {value!r}", key=param)
    return value


def split_files(folder: Path, split: str) -> list[Path]:
    """Data files directly in ``folder`` named after ``split`` (``train.jsonl``,
    ``train-00000-of-00002.parquet``, ...), sorted."""
    return sorted(f for f in folder.iterdir()
                  if f.is_file() and f.suffix.lower() in FORMATS
                  and (f.stem == split or f.stem.startswith(f"{split}-")))


def split_rows(path: str, split: str, *, config: str | None = None,
               param: str = "path") -> Iterator[Row]:
    """The rows of one split.

    A local file is the split itself. A local folder with files named after the split is read file
    by file, so errors name the exact file and line. Anything else (a folder laid out otherwise, a
    hub snapshot, ``save_to_disk`` output, a hub id) goes through
    `losscraft.data.hub_datasets.load_hf_dataset`, with rows numbered from 1 within the split.
    """
    p = Path(path).expanduser()
    if p.is_file():
        yield from read_rows(p, param=param)
        return
    files = split_files(p, split) if p.is_dir() else []
    if files:
        for f in files:
            yield from read_rows(f, param=param)
        return
    from losscraft.data.hub_datasets import load_hf_dataset

    dataset = load_hf_dataset(path, split=split, config=config, param=param)
    for number, record in enumerate(dataset, 1):
        yield Row(dict(record), file=str(path), number=number)


def class_labels(row: Row, field: str, names: tuple[str, ...]) -> list[str]:
    """A per-turn class-label list as names: accepts label ids (``datasets.ClassLabel``) or the
    names themselves; missing -> ``[]``."""
    value = row.get(field, None)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
        raise row.error(field, f"expected a list of labels, got {type(value).__name__}")
    out = []
    for item in list(value.tolist() if hasattr(value, "tolist") else value):
        if isinstance(item, int) and not isinstance(item, bool) and 0 <= item < len(names):
            out.append(names[item])
        elif isinstance(item, str) and item in names:
            out.append(item)
        else:
            raise row.error(field, f"unknown label {item!r}; expected 0..{len(names) - 1} or one "
                                   f"of {', '.join(names)}")
    return out
