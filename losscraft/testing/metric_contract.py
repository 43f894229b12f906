"""The metrics part of the objective contract: each metric's reduction over micro-batches.

A step logs a metric listed in ``LossOutput.summed`` as the sum over its micro-batches, any
other as their mean. Which one is right is decided by what the number is, and a wrong choice
shows only when ``grad_accum`` changes: a per-micro-batch mean listed in ``summed`` doubles at
``grad_accum = 2``, a step-wide partial sum (a count, or a total divided by ``ctx.step_sum``)
left out of it halves.

The check runs one step over a batch made of the same rows twice (``A + A``), then over two
micro-batches ``A`` and ``A``. Every correctly declared metric logs the same number both ways
— a mean over ``A + A`` is the mean over ``A``, a sum is twice the sum over ``A`` — so any
difference is a declaration error, and its factor says which one.
"""

from __future__ import annotations

import math
from typing import Any, Callable


def reduction_problems(one: dict[str, float], two: dict[str, float], *, term: str,
                       rtol: float = 1e-4, atol: float = 1e-6) -> list[str]:
    """What is wrong with the metrics ``two`` (two micro-batches ``A``, ``A``) against ``one``
    (one batch ``A + A``) of objective term ``term``: one message per metric that differs, saying
    which way it is mis-declared."""
    problems = []
    for key in sorted(set(one) & set(two) - {term, "loss"}):  # values: the accumulation check
        a, b = one[key], two[key]
        if not (isinstance(a, float) and isinstance(b, float)) or not (math.isfinite(a)
                                                                        and math.isfinite(b)):
            continue
        if math.isclose(a, b, rel_tol=rtol, abs_tol=atol):
            continue
        metric = key.split("/", 1)[1] if key.startswith(f"{term}/") else key
        where = f"objective '{term}': metric '{metric}' logs {b:.6g} over two micro-batches " \
                f"but {a:.6g} over one batch of the same rows"
        if math.isclose(b, 2 * a, rel_tol=10 * rtol, abs_tol=atol):
            problems.append(f"{where}: it is a per-micro-batch mean (or ratio) listed in "
                            "LossOutput.summed, so it doubles at grad_accum = 2; remove it from "
                            "summed")
        elif math.isclose(2 * b, a, rel_tol=10 * rtol, abs_tol=atol):
            problems.append(f"{where}: it is a step-wide partial sum (a count, or a total "
                            "divided by ctx.step_sum) missing from LossOutput.summed, so it "
                            "halves at grad_accum = 2; add it to summed")
        else:
            problems.append(f"{where}: it depends on grad_accum (declare partial sums in "
                            "LossOutput.summed, normalise by ctx.step_sum)")
    return problems


def check_metric_reductions(name: str, loss: Any, run_step: Callable[..., Any],
                            batch_of: Callable[[list], Any], examples: list, *,
                            rtol: float, atol: float) -> list[str]:
    """Run objective ``loss`` (term ``name``) over ``examples + examples`` as one batch and as
    two micro-batches of ``examples`` (``batch_of`` collates, ``run_step(objective, batches)``
    returns a step's metrics); the `reduction_problems` found."""
    from losscraft.core.compose import Term, WeightedObjective

    objective = WeightedObjective([Term(name, loss)])
    one = run_step(objective, [batch_of(list(examples) + list(examples))])
    two = run_step(objective, [batch_of(list(examples)), batch_of(list(examples))])
    return reduction_problems(one, two, term=name, rtol=rtol, atol=atol)
