"""``--set KEY=VALUE`` overrides on a raw recipe mapping.

Keys are dotted paths. Array-of-table entries are addressed by name or index: a stage by its
``name`` (``stages.adversarial.max_steps=2``), a term by its ``name`` or ``plugin``
(``stages.main.terms.npair.weight=0.5``), any entry by position (``stages.0.data.1.limit=10``).
Values are TOML (``3``, ``1e-4``, ``true``, ``"text"``, ``[1, 2]``); anything that does not parse as
TOML is taken as a bare string (``--set model.path=/models/x``).
"""

from __future__ import annotations

import copy
import tomllib
from typing import Any

from losscraft.errors import RecipeError


def parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _find_entry(items: list, part: str, path: str, file: str) -> dict:
    if part.isdigit() and int(part) < len(items):
        return items[int(part)]
    for item in items:
        if isinstance(item, dict) and part in (item.get("name"), item.get("plugin")):
            return item
    known = [str(i.get("name") or i.get("plugin")) for i in items if isinstance(i, dict)]
    raise RecipeError(f"no entry '{part}' (entries: {', '.join(known) or 'none'}; or use an "
                      "index)", file=file, key=path)


def apply_override(raw: dict, assignment: str, *, file: str = "") -> None:
    """Apply one ``KEY=VALUE`` to ``raw`` in place."""
    if "=" not in assignment:
        raise RecipeError(f"--set expects KEY=VALUE, got {assignment!r}", file=file)
    key, text = assignment.split("=", 1)
    assign(raw, key, parse_value(text.strip()), file=file)


def assign(raw: dict, key: str, value: Any, *, file: str = "") -> None:
    """Set the dotted ``key`` of ``raw`` to ``value`` in place (see the module doc for paths)."""
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(f"empty key {key!r}", file=file)
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        path = ".".join(parts[: i + 1])
        child = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list):
            child = _find_entry(node, part, path, file)
        elif child is None:
            child = node[part] = {}
        if not isinstance(child, (dict, list)):
            raise RecipeError(f"cannot set inside '{part}', which is {child!r}", file=file, key=path)
        node = child
    if isinstance(node, list):
        raise RecipeError("address a list entry by name or index before the field",
                          file=file, key=key)
    node[parts[-1]] = value


def apply_overrides(raw: dict, assignments: list[str], *, file: str = "") -> dict:
    """A copy of ``raw`` with every ``KEY=VALUE`` of ``assignments`` applied in order."""
    result = copy.deepcopy(raw)
    for assignment in assignments:
        apply_override(result, assignment, file=file)
    return result


def apply_assignments(raw: dict, assignments: dict, *, file: str = "", where: str = "") -> dict:
    """A copy of ``raw`` with each ``{"dotted.key": value}`` of ``assignments`` applied (how a
    recipe's ``[profiles.<name>]`` table is applied)."""
    if not isinstance(assignments, dict):
        raise RecipeError("expected a table of \"dotted.key\" = value", file=file, key=where)
    result = copy.deepcopy(raw)
    for key, value in assignments.items():
        assign(result, key, value, file=file)
    return result
