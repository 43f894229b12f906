"""Names that become folder names inside a run (stages, experts) must be simple names, so no
recipe value can make the trainer write outside its run folder."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def check_name(name: object) -> str | None:
    """Why ``name`` cannot be a folder name inside a run (``None`` when it can): letters, digits,
    ``_``, ``-`` and ``.``, not starting with ``.`` or ``-``, no ``..``, at most 64 characters."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        return (f"{name!r} is not a simple name (letters, digits, '_', '-', '.'; not starting "
                "with '.' or '-'; at most 64 characters): it becomes a folder in the run")
    return None
