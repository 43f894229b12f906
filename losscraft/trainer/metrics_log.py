"""Per-step metrics, appended as one JSON object per line to ``metrics.jsonl`` (combined over a
step's micro-batches by `losscraft.core.step.StepMetrics`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from losscraft.errors import DataError
from losscraft.runtime.safe_files import open_append, read_text, write_file


def _ranges(steps: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1–3, 7"``."""
    parts, start = [], None
    for i, step in enumerate(steps):
        if start is None:
            start = step
        if i + 1 == len(steps) or steps[i + 1] != step + 1:
            parts.append(f"{start}" if start == step else f"{start}–{step}")
            start = None
    return ", ".join(parts)


def _plain(value: Any) -> Any:
    if torch.is_tensor(value):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class MetricsLog:
    """Appends records to ``path`` and flushes each line (a crash loses nothing written). The
    file is opened with ``O_NOFOLLOW`` and rewritten only through a fresh temporary file
    (`losscraft.runtime.safe_files`): a symlink in its place is an error naming it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open_append(self.path)
        self.steps: list[int] = []  # the steps with a row, after `truncate_after`

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._file.flush()

    def truncate_after(self, global_step: int) -> None:
        """Drop records past ``global_step`` (steps redone after a resume). A torn last line (a
        kill mid-write) is dropped; an unreadable line before it is a `DataError` naming the
        row."""
        self._file.close()
        try:
            lines = read_text(self.path).splitlines() if self.path.exists() else []
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
            except (ValueError, RecursionError):
                if row == len(lines):
                    continue  # torn by an interrupted write: that step is redone anyway
                raise DataError("not a JSON object (fix or delete this line to resume)",
                                file=str(self.path), row=row) from None
            step = record.get("step", 0)
            if not isinstance(step, int) or step <= global_step:
                kept.append(line)
                if isinstance(step, int) and "event" not in record:
                    self.steps.append(step)
        write_file(self.path, "".join(l + "\n" for l in kept))
        self._file = open_append(self.path)

    def check_rows(self, global_step: int, log_every: int, console) -> None:
        """After `truncate_after` on resume: warn (on the console and as an ``{"event":
        "metrics_missing"}`` row) when the log holds fewer rows of the steps before the
        checkpoint than the run writes (``log_every``: at least one per ``log_every`` steps) —
        rows were lost (the file emptied or edited); the steps are not redone."""
        logged = {s for s in self.steps if 1 <= s <= global_step}
        expected = global_step // max(log_every, 1)
        if len(logged) >= expected:
            return
        missing = sorted(set(range(1, global_step + 1)) - logged)
        shown = _ranges(missing) if log_every == 1 else f"{expected - len(logged)} rows"
        console.print(f"[bold yellow]warning:[/] {self.path} holds rows for {len(logged)} of "
                      f"the {global_step} steps before the checkpoint (missing: {shown}); those "
                      "steps are in the checkpoint and are not redone, so their rows stay "
                      "missing", highlight=False)
        self.write({"step": global_step, "event": "metrics_missing", "logged": len(logged),
                    "expected": expected})

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

    def check_rows(self, global_step: int, log_every: int, console) -> None:
        """Nothing to check."""

    def close(self) -> None:
        """Nothing to close."""
