"""``losscraft bench --param NAME.KEY=VALUE`` parsing, and the "did anything run" check."""

from __future__ import annotations

from losscraft.bench.grid import BenchError
from losscraft.recipe.overrides import parse_value


def parse_params(assignments) -> dict[str, dict]:
    """``["token_focal.gamma=2.0", ...]`` → ``{"token_focal": {"gamma": 2.0}}``; values are TOML
    (``2.0``, ``true``, ``"text"``, ``[1, 2]``; anything else is a string). Raises `BenchError`
    (one line, naming the assignment) for a malformed one."""
    out: dict[str, dict] = {}
    for text in assignments:
        head, eq, value = text.partition("=")
        name, dot, key = head.strip().partition(".")
        if not eq or not dot or not name or not key.strip():
            raise BenchError(f"--param {text!r}: expected NAME.KEY=VALUE "
                             "(e.g. --param token_focal.gamma=2.0)")
        key = key.strip()
        if not key.isidentifier():
            raise BenchError(f"--param {text!r}: {key!r} is not a parameter name")
        if key in out.setdefault(name, {}):
            raise BenchError(f"--param {text!r}: {name}.{key} is given twice")
        out[name][key] = parse_value(value.strip())
    return out


def check_something_ran(result) -> None:
    """Raise `BenchError` when no row and no comparison of ``result`` ran (every point was
    skipped or failed), so the command exits non-zero."""
    entries = list(result.rows) + list(result.comparisons)
    if not entries or any(e.get("status") == "ok" for e in entries):
        return
    reasons = sorted({e.get("reason", "") for e in entries if e.get("reason")})
    raise BenchError("nothing was benchmarked: every point was skipped or failed ("
                     + "; ".join(reasons)[:300] + ")")
