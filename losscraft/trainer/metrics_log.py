"""Per-step metrics, appended as one JSON object per line to ``metrics.jsonl``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch


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
        """Drop records past ``global_step`` (steps redone after a resume)."""
        self._file.close()
        lines = self.path.read_text(encoding="utf-8").splitlines() if self.path.exists() else []
        kept = [l for l in lines if l.strip() and json.loads(l).get("step", 0) <= global_step]
        self.path.write_text("".join(l + "\n" for l in kept), encoding="utf-8")
        self._file = self.path.open("a", encoding="utf-8")

    def close(self) -> None:
        self._file.close()


class StepAccumulator:
    """Combines the metrics of a step's micro-batches: term values (already normalised by step
    totals) are summed; every other metric is averaged."""

    def __init__(self, summed: set[str]):
        self.summed = summed
        self.values: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if isinstance(value, str):
                continue
            value = float(value.item() if torch.is_tensor(value) else value)
            if not math.isfinite(value):  # e.g. a micro-batch without tokens for a term
                continue
            self.values[key] = self.values.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def result(self) -> dict[str, float]:
        return {k: v if k in self.summed else v / self.counts[k] for k, v in self.values.items()}
