"""Test contexts for `losscraft eval`: a JSONL file (one object per line with ``context``: a string
— one user turn — or a list of turns, oldest first) or a registered data source (each example's
``history``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from losscraft.data.jsonl import context_turns, iter_jsonl
from losscraft.errors import DataError


def read_contexts_jsonl(path: Path) -> list[list[str]]:
    """Contexts from a JSONL file; a bad line raises `DataError` naming the file and row."""
    contexts = []
    for row, record in iter_jsonl(path):
        if not isinstance(record, dict) or "context" not in record:
            raise DataError("expected an object with a 'context' key", file=str(path), row=row,
                            field="context")
        contexts.append(context_turns(record["context"], file=str(path), row=row))
    if not contexts:
        raise DataError("holds no contexts", file=str(path))
    return contexts


def source_contexts(name: str, params: dict[str, Any], *, limit: int | None = None
                    ) -> list[list[str]]:
    """The histories of data source ``name`` (created with ``params`` through the registry)."""
    from losscraft.plugins.registry import get_registry

    source = get_registry().create("data_source", name, params)
    contexts = []
    for i, example in enumerate(source):
        if limit is not None and len(contexts) >= limit:
            break
        if not example.history or not str(example.history[-1]).strip():
            raise DataError("example has an empty history", file=f"data source '{name}'",
                            row=i + 1, field="history")
        contexts.append([str(t) for t in example.history])
    if not contexts:
        raise DataError("produced no examples", file=f"data source '{name}'")
    return contexts
