"""Per-step metrics, appended as one JSON object per line to ``metrics.jsonl`` (combined over a
step's micro-batches by `losscraft.core.step.StepMetrics`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from losscraft.errors import DataError


def _plain(value: Any) -> Any:
    if torch.is_tensor(value):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends records to ``path`` and flushes each line (a crash loses nothing written)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def truncate_after(self, global_step: int) -> None:
        """Drop records past ``global_step`` (steps redone after a resume). A torn last line (a
        kill mid-write) is dropped; an unreadable line before it is a `DataError` naming the
        row."""
        self._file.close()
        try:
            lines = (self.path.read_text(encoding="utf-8").splitlines()
                     if self.path.exists() else [])
        except UnicodeDecodeError as exc:
            raise DataError(f"not UTF-8 text ({exc.reason})", file=str(self.path)) from None
        kept = []
        for row, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError:
                if row == len(lines):
                    continue  # torn by an interrupted write: that step is redone anyway
                raise DataError("not a JSON object (fix or delete this line to resume)",
                                file=str(self.path), row=row) from None
            step = record.get("step", 0)
            if not isinstance(step, int) or step <= global_step:
                kept.append(line)
        self.path.write_text("".join(l + "\n" for l in kept), encoding="utf-8")
        self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._file.close()


class NullMetricsLog:
    """`MetricsLog`'s interface writing nothing: what the ranks other than 0 of a data-parallel
    run use, so ``metrics.jsonl`` gets each step once (rank 0's record holds the metrics
    combined over every rank)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        """Discard ``record``."""

    def truncate_after(self, global_step: int) -> None:
        """Nothing to truncate."""

    def close(self) -> None:
        """Nothing to close."""
