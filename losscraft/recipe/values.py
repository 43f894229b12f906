"""The value checks of a dialog-training recipe (`losscraft.recipe.parse` reads the tables):
ranges of every stage's and the run's settings, and ``[report]``. Each check records its
problem on the `RecipeLocation` (`RecipeLocation.collect`) and the others still run, so one
``losscraft validate`` names every bad value."""

from __future__ import annotations

import os
import re
from typing import Any

from losscraft.errors import did_you_mean
from losscraft.recipe.schema import ROT_PLACEMENTS, ComponentSpec, ReportSpec, RunSpec, StageSpec
from losscraft.recipe.tables import (RecipeLocation, as_table, check_range, component_parts,
                                     settings_table)


def component_spec(raw: Any, key: str, where: RecipeLocation) -> ComponentSpec:
    """A component table (``plugin`` + parameters) at ``key``."""
    parts = component_parts(raw, key, where)
    return ComponentSpec(parts["core"]["plugin"], parts["params"], key)


#: Learning-rate schedules a stage may name (transformers schedulers that need no extra
#: arguments).
SCHEDULES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
             "constant_with_warmup", "inverse_sqrt")
#: The longest a stage may be asked to run (a typo guard: 1e11 steps would never finish).
MAX_STEPS = 100_000_000
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_stage_values(s: StageSpec, where: RecipeLocation) -> None:
    positive = {"batch_size": s.batch_size, "grad_accum": s.grad_accum,
                "max_context_tokens": s.max_context_tokens,
                "max_response_tokens": s.max_response_tokens,
                "max_text_chars": s.max_text_chars}
    for name, value in positive.items():
        if value < 1:
            where.problems.append(where.error(f"{s.key}.{name}",
                                              f"expected a positive integer, got {value}"))
    for name in ("warmup_steps", "checkpoint_every", "max_negatives", "group_by_length"):
        with where.collect():
            check_range(where, f"{s.key}.{name}", getattr(s, name), low=0, what="an integer")
    with where.collect():
        _check_length(s, where)
    with where.collect():
        check_range(where, f"{s.key}.lr", s.lr, low=0, high=MAX_LR, what="a learning rate")
    with where.collect():
        _check_stage_rest(s, where)


#: The largest learning rate accepted: AdamW's steps are about lr per weight, so beyond this
#: every step would overwrite the weights (and 1e38 overflows inside the optimizer).
MAX_LR = 10.0


def _check_length(s: StageSpec, where: RecipeLocation) -> None:
    """``max_steps`` and ``epochs`` (a warm-up longer than the stage is a warning when it
    starts, `losscraft.trainer.resume.check_warmup`)."""
    check_range(where, f"{s.key}.epochs", s.epochs, low=0, high=1e6,
                what="a number of epochs")
    if s.max_steps < 0 or s.epochs <= 0 and s.max_steps == 0:
        raise where.error(f"{s.key}.max_steps", "set max_steps > 0 or epochs > 0")
    check_range(where, f"{s.key}.max_steps", s.max_steps, high=MAX_STEPS, what="an integer")


def _check_stage_rest(s: StageSpec, where: RecipeLocation) -> None:
    check_range(where, f"{s.key}.weight_decay", s.weight_decay, low=0)
    check_range(where, f"{s.key}.warmup_ratio", s.warmup_ratio, low=0, high=1)
    check_range(where, f"{s.key}.max_grad_norm", s.max_grad_norm, low=0,
                what="a number (0 disables clipping)")
    if s.schedule not in SCHEDULES:
        raise where.error(f"{s.key}.schedule", f"unknown schedule {s.schedule!r}"
                          f"{did_you_mean(s.schedule, SCHEDULES)} (one of {', '.join(SCHEDULES)})")
    if s.init not in ("previous", "base"):
        raise where.error(f"{s.key}.init", f"expected 'previous' or 'base', got {s.init!r}")
    for term in s.terms:
        if term.penalty is not None:
            check_range(where, f"{term.key}.penalty.weight", term.penalty.weight, low=0)
            check_range(where, f"{term.key}.penalty.radius", term.penalty.radius, low=0,
                        low_open=True)
            check_range(where, f"{term.key}.penalty.eps", term.penalty.eps, low=0,
                        what="a number (0: the absolute radius)")
    if s.mining is not None:
        m, key = s.mining, f"{s.key}.mining"
        for name in ("num_samples", "max_new_tokens"):
            check_range(where, f"{key}.{name}", getattr(m, name), low=1, what="an integer")
        check_range(where, f"{key}.max_examples", m.max_examples, low=0, what="an integer")
        check_range(where, f"{key}.threshold", m.threshold, low=0, high=1)
        check_range(where, f"{key}.temperature", m.temperature, low=0, low_open=True)
        check_range(where, f"{key}.top_p", m.top_p, low=0, high=1, low_open=True)
    if s.replay is not None:
        r, key = s.replay, f"{s.key}.replay"
        for name in ("max_new_tokens", "batch_size"):
            check_range(where, f"{key}.{name}", getattr(r, name), low=1, what="an integer")
        check_range(where, f"{key}.temperature", r.temperature, low=0, low_open=True)
        check_range(where, f"{key}.top_p", r.top_p, low=0, high=1, low_open=True)
        if r.enabled and not r.data:
            raise where.error(f"{key}.data", "add the [[" + key + ".data]] sources whose "
                              "contexts to replay (or set enabled = false)")
    if s.rots is not None and s.rots.placement not in ROT_PLACEMENTS:
        raise where.error(f"{s.key}.rots.placement", f"expected one of "
                          f"{', '.join(ROT_PLACEMENTS)}, got {s.rots.placement!r}")


def check_run_values(run: RunSpec, where: RecipeLocation) -> None:
    """``[run]``'s values, each problem recorded on its own."""
    cpus = os.cpu_count() or 1
    checks = [
        (run.precision in ("fp32", "bf16"), "run.precision",
         f"expected 'fp32' or 'bf16', got {run.precision!r}"),
        (bool(_DEVICE.fullmatch(run.device)), "run.device",
         f"expected auto, cpu, mps, cuda or cuda:N, got {run.device!r}"),
        (0 <= run.threads <= cpus, "run.threads", f"expected an integer from 0 (torch's "
         f"default) to {cpus} (this machine's CPUs), got {run.threads}"),
        (run.sharding in ("none", "fsdp"), "run.sharding",
         f"expected 'none' or 'fsdp', got {run.sharding!r}"),
        (run.on_nonfinite in ("stop", "skip"), "run.on_nonfinite",
         f"expected 'stop' or 'skip', got {run.on_nonfinite!r}")]
    for ok, key, message in checks:
        if not ok:
            where.problems.append(where.error(key, message))
    for key, value, low, high, what in (
            ("run.log_every", run.log_every, 1, None, "an integer"),
            ("run.seed", run.seed, 0, 2**63 - 1, "an integer"),
            ("run.max_skipped_steps", run.max_skipped_steps, 0, None, "an integer"),
            ("run.max_update_ratio", run.max_update_ratio, 0, None,
             "a number (0 turns the check off)")):
        with where.collect():
            check_range(where, key, value, low=low, high=high, what=what)


def report_spec(raw: Any, where: RecipeLocation) -> ReportSpec:
    """``[report]``: settings plus two data-source tables (``contexts``, ``casual_contexts``) and
    an optional scorer table (``second_scorer``)."""
    table = dict(as_table(raw, "report", where))
    sources = {name: table.pop(name) for name in ("contexts", "casual_contexts", "second_scorer")
               if name in table}
    spec = settings_table(ReportSpec, table, "report", where)
    for name, value in sources.items():
        setattr(spec, name, component_spec(value, f"report.{name}", where))
    for name in ("num_contexts", "num_casual_contexts", "num_samples", "max_new_tokens",
                 "batch_size", "rerank_candidates"):
        if getattr(spec, name) < 1:
            raise where.error(f"report.{name}",
                              f"expected a positive integer, got {getattr(spec, name)}")
    for name in ("examples_shown", "casual_examples_shown"):
        if getattr(spec, name) < 0:
            raise where.error(f"report.{name}",
                              f"expected an integer >= 0, got {getattr(spec, name)}")
    if not 0.0 <= spec.threshold <= 1.0:
        raise where.error("report.threshold", f"expected a number in [0, 1], got {spec.threshold}")
    if spec.temperature <= 0:
        raise where.error("report.temperature", f"expected a number > 0, got {spec.temperature}")
    if not 0.0 < spec.top_p <= 1.0:
        raise where.error("report.top_p", f"expected a number in (0, 1], got {spec.top_p}")
    return spec
