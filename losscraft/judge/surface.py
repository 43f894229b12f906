"""The surface floor: the best rule that reads only a reply's length and whether it asks a question.

A judge that does not beat this floor by a wide margin reads form, not meaning. The rule family:
with ``long = words > t`` and ``asks = "?" in reply``, any boolean function of ``(long, asks)``
(all 16 truth tables) for any threshold ``t``. `fit_surface_rule` picks, on labelled *training*
pairs, the rule with the highest accuracy for one target (unsafe, or prosocial among replies to
risky contexts); `SurfaceFloor` applies the two fitted rules as a scorer would, so the probe
metrics of the floor and of a judge come from the same code (`probe_metrics`).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

_WORD = re.compile(r"[A-Za-z0-9']+")
MAX_THRESHOLD = 80


def words(text: str) -> int:
    """Words as a reader counts them (runs of letters, digits and apostrophes)."""
    return len(_WORD.findall(text))


@dataclass(frozen=True)
class SurfaceRule:
    """``table[2·long + asks]`` is the prediction, with ``long = words > threshold``."""

    threshold: int
    table: tuple[bool, bool, bool, bool]

    def __call__(self, reply: str) -> bool:
        return self.table[2 * (words(reply) > self.threshold) + ("?" in reply)]

    def describe(self) -> str:
        """The rule in words, e.g. ``"true when ≤ 16 words and no '?'"``."""
        short_q, short, long_q, long = self.table[1], self.table[0], self.table[3], self.table[2]
        if short == short_q and long == long_q and short != long:  # length alone decides
            return f"true when {'>' if long else '≤'} {self.threshold} words"
        cases = [f"{'>' if long else '≤'} {self.threshold} words and "
                 f"{'a' if asks else 'no'} '?'"
                 for (long, asks), hit in zip(itertools.product((0, 1), repeat=2), self.table)
                 if hit]
        if not cases:
            return "never"
        return "always" if len(cases) == 4 else "true when " + " or ".join(cases)


def fit_surface_rule(replies: Sequence[str], targets: Sequence[bool]) -> SurfaceRule:
    """The most accurate rule of the family on ``(replies, targets)`` (ties: smallest threshold,
    then table order)."""
    if len(replies) != len(targets) or not replies:
        raise ValueError(f"need equally many replies and targets, got {len(replies)}, "
                         f"{len(targets)}")
    lengths = [words(r) for r in replies]
    asks = [("?" in r) for r in replies]
    best: tuple[int, SurfaceRule] | None = None
    for t in range(MAX_THRESHOLD + 1):
        # counts of (cell, target): the best table takes the majority target of each cell
        cells = [[0, 0] for _ in range(4)]
        for n, q, y in zip(lengths, asks, targets):
            cells[2 * (n > t) + q][bool(y)] += 1
        table = tuple(c[1] > c[0] for c in cells)
        correct = sum(max(c) for c in cells)
        if best is None or correct > best[0]:
            best = (correct, SurfaceRule(t, table))
    return best[1]


@dataclass(frozen=True)
class SurfaceFloor:
    """Two fitted rules used as a scorer: P(unsafe) and P(prosocial) are 0 or 1."""

    unsafe: SurfaceRule
    prosocial: SurfaceRule

    def p_unsafe(self, contexts: Sequence, replies: Sequence[str]) -> list[float]:
        return [float(self.unsafe(r)) for r in replies]

    def p_prosocial(self, contexts: Sequence, replies: Sequence[str]) -> list[float]:
        return [float(self.prosocial(r)) for r in replies]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "SurfaceFloor":
        return cls(*(SurfaceRule(d["threshold"], tuple(d["table"]))
                     for d in (data["unsafe"], data["prosocial"])))


def fit_surface_floor(examples: Sequence) -> SurfaceFloor:
    """The floor fitted on labelled `Example`s: unsafe on every pair, prosocial on the safe pairs
    whose prosociality is known (replies to risky contexts)."""
    unsafe = fit_surface_rule([e.response for e in examples], [not e.is_safe for e in examples])
    known = [e for e in examples if e.is_prosocial is not None]
    prosocial = fit_surface_rule([e.response for e in known], [bool(e.is_prosocial) for e in known])
    return SurfaceFloor(unsafe, prosocial)
