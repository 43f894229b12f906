"""The project's error types: every user-facing failure says *what* is wrong and *where*."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


class LosscraftError(Exception):
    """Base class for errors that the CLI prints as a clear message (no traceback)."""


class RecipeError(LosscraftError):
    """A recipe is invalid. Names the file, the key path and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.detail = message
        where = ", ".join(p for p in (file and f"file {file}", key and f"key '{key}'") if p)
        super().__init__(f"{where}: {message}" if where else message)


class RecipeErrors(RecipeError):
    """Several problems in one recipe, all found by one ``losscraft validate``. ``errors`` holds
    each `RecipeError`; ``file``/``key`` are the first one's."""

    def __init__(self, errors: list[RecipeError]):
        self.errors = list(errors)
        first = self.errors[0]
        self.file, self.key = first.file, first.key
        self.detail = f"{len(self.errors)} problems"
        lines = "\n".join(f"  - {e}" for e in self.errors)
        LosscraftError.__init__(self, f"{len(self.errors)} problems in the recipe:\n{lines}")


class DataError(LosscraftError):
    """A data file is malformed. Names the file, the row (1-based) and the field."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None):
        self.file, self.row, self.field = file, row, field
        parts = [p for p in (file and f"{file}", row is not None and f"row {row}",
                             field and f"field '{field}'") if p]
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class PluginError(LosscraftError):
    """A plugin is missing, fails to load, or was given parameters it does not accept."""


class ModelError(LosscraftError):
    """A model or tokenizer cannot be loaded or is incompatible (e.g. expert vocabulary mismatch)."""


class OfflineError(LosscraftError):
    """Something needed the network (a hub id) while none is reachable; the message says what to
    pass instead (a local path)."""


class CheckpointError(LosscraftError):
    """A checkpoint cannot be written or fails verification (missing file, checksum mismatch,
    invalid ``state.json``, a file that is not plain data)."""


class RunFolderError(LosscraftError):
    """The output folder cannot be used: a path would leave it, it is not a losscraft run, or
    another process holds its lock."""


class RecipeChangedError(LosscraftError):
    """``--resume`` with a recipe that differs from the checkpoint's in keys that affect
    training; the message lists each key with its old and new value."""


class NonFiniteError(LosscraftError):
    """A loss, a term or the gradient norm was NaN/inf: the run stopped before the optimizer
    step, with the last good checkpoint still ``latest``."""


class LossValueError(LosscraftError):
    """A loss term returned something the trainer cannot backpropagate: not a `LossOutput`, a
    non-scalar value, or a value not connected to the graph. Names the term, and the stage and
    step once the trainer has added them (`at`)."""

    def __init__(self, problem: str, *, term: str, step: int | None = None,
                 stage: str | None = None):
        self.problem, self.term, self.step, self.stage = problem, term, step, stage
        where = ", ".join(p for p in (stage and f"stage {stage}",
                                      step is not None and f"step {step}",
                                      f"term '{term}'") if p)
        super().__init__(f"{where}: {problem}")

    def at(self, *, stage: str, step: int) -> "LossValueError":
        """The same error, located at ``stage`` and (1-based) optimizer ``step``."""
        return LossValueError(self.problem, term=self.term, step=step, stage=stage)
