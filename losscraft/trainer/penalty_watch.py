"""The stage-end check that a gradient-norm penalty acts: its share of the step
(``<term>/share`` in each step's record, `losscraft.core.penalty_share`) must reach
`MIN_SHARE` at least once in the stage, else the penalty is noise next to the rest of the
objective and the run says so. Only the steps that measure the share carry it (the penalty's
``share_every``: every N-th global step and the stage's first); the others are skipped."""

from __future__ import annotations

import math
from typing import Any

#: below this share for a whole stage the penalty does not measurably move the weights
MIN_SHARE = 1e-4
SUFFIX = "/share"


class PenaltyShareWatch:
    """Collects the largest share of every penalty term over a stage's steps."""

    def __init__(self) -> None:
        self.largest: dict[str, float] = {}

    def see(self, record: dict[str, Any]) -> None:
        """Take one step's metrics record."""
        for key, value in record.items():
            if key.endswith(SUFFIX) and isinstance(value, (int, float)) and not math.isnan(value):
                term = key[:-len(SUFFIX)]
                self.largest[term] = max(self.largest.get(term, 0.0), float(value))

    def warnings(self, stage: str) -> list[str]:
        """One line per penalty term whose share stayed below `MIN_SHARE` all stage."""
        return [f"stage '{stage}': the penalty is not acting: raise λ (term '{term}': its "
                f"gradient stayed below {MIN_SHARE:g} of the rest of the objective's, at most "
                f"{share:.2g}; the weight of [stages.terms.penalty])"
                for term, share in self.largest.items() if share < MIN_SHARE]
