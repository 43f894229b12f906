"""``losscraft bench --full-step``: one optimizer step of each objective on a real model, as a
ratio to a plain NLL step measured in the same run, and where the step's time goes.

Each *configuration* is the objective of a recipe: ``nll`` (the baseline: the ``clean`` recipe's
step), and for every other registered objective ``X`` the step ``nll + X`` (as the recipes pair
them); where ``X`` takes ``fused``, also ``X:fused`` (``nll`` and ``X`` both fused); for
``safety_loss`` also the FlatGD step ``nll + safety_loss + 0.01·‖∇ safety_loss‖²`` with the
``exact`` (its default ``layerwise`` mode) and the ``finite_difference`` penalty, unfused and
fused, and the exact penalty's other modes: ``flatgd-exact-autograd`` (reverse over reverse on
plain autograd, the whole first-backward graph held), ``flatgd-exact-torchfunc`` (the
``torch.func`` re-evaluation).
One micro-batch per step (``grad_accum = 1``), AdamW. Each step runs on the model as its terms'
``prepare`` leaves it (the exact penalty's layer wrappers), undone after the step so that the
next configuration finds the model as loaded.

Configurations are timed round-robin (every repeat runs each once, the order rotating), so drift
hits all alike; ``ratio_to_nll`` is the median over repeats of ``t_config / t_nll`` of the same
repeat. Time shares come from timers (``torch.cuda.synchronize`` around each on CUDA):
``policy_forward`` (the step's shared forward), ``expert_forwards``, ``loss_heads`` (the terms'
own work, forwards excluded), ``penalty`` (the penalty term: its re-evaluations and double
backward or extra forward/backward), ``backward`` and ``optimizer``. Peak memory of a step is
measured as in `losscraft.bench.measure` (CUDA allocator, or CPU peak RSS in this process).
"""

from __future__ import annotations

import statistics

import torch

from losscraft.bench.runner import BenchResult
from losscraft.bench.step_setup import (RECIPE_CONTEXT_TOKENS, RECIPE_RESPONSE_TOKENS,
                                        bench_examples, configurations, load_model)
from losscraft.bench.step_timing import SHARES, one_step, step_peak_bytes


def run_full_step(model_name: str, *, device: str = "cpu", patterns=None, repeats: int = 3,
                  warmup: int = 1, rows: int = 4, registry=None, meta: dict | None = None,
                  progress_factory=None, row_length: str = "short") -> BenchResult:
    """Time every configuration's optimizer step round-robin; one row per configuration."""
    from losscraft.data.collate import DialogCollator
    from losscraft.plugins.registry import get_registry

    registry = registry or get_registry()
    configs = configurations(registry, patterns)
    examples = bench_examples(rows, row_length)  # a bad --row-length fails before loading
    model, tokenizer, experts = load_model(model_name, device)
    batches = {neg: DialogCollator(tokenizer, max_context_tokens=RECIPE_CONTEXT_TOKENS,
                                   max_response_tokens=RECIPE_RESPONSE_TOKENS,
                                   pack_negatives=neg)(examples).to(device)
               for neg in (False, True)}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-7)
    times: dict[str, list[dict]] = {c.name: [] for c in configs}
    result = BenchResult(meta or {})
    total = (warmup + repeats) * len(configs) + len(configs)
    bar_cm = progress_factory(total) if progress_factory else None
    errors: dict[str, str] = {}

    def run(config, record: bool):
        if config.name in errors:
            return
        try:
            out = one_step(config, model, experts, batches[config.negatives], optimizer, device)
        except Exception as exc:  # noqa: BLE001 - reported in its row
            errors[config.name] = f"{type(exc).__name__}: {exc}"
            optimizer.zero_grad(set_to_none=True)
            return
        if record:
            times[config.name].append(out)

    def advance(bar, task, label):
        if bar is not None:
            bar.update(task, advance=1, description=label)

    with (bar_cm if bar_cm is not None else _Null()) as bar:
        task = bar.add_task("full steps", total=total) if bar is not None else None
        for r in range(warmup + repeats):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for config in order:
                run(config, record=r >= warmup)
                advance(bar, task, f"{config.name} (repeat {r + 1})")
        peaks = {}
        for config in configs:
            if config.name not in errors:
                try:
                    peaks[config.name] = step_peak_bytes(config, model, experts,
                                                         batches[config.negatives], optimizer,
                                                         device)
                except Exception as exc:  # noqa: BLE001
                    errors[config.name] = f"{type(exc).__name__}: {exc}"
            advance(bar, task, f"peak memory: {config.name}")
    base = times["nll"]
    for config in configs:
        batch = batches[config.negatives]
        row = {"config": config.name, "model": model_name, "device": device,
               "row_length": row_length,
               "rows": batch.input_ids.shape[0], "length": batch.input_ids.shape[1],
               "response_tokens": int(batch.response_mask.sum()), "penalty": config.penalty,
               "status": "ok", "reason": ""}
        if config.name in errors:
            row.update(status="error", reason=errors[config.name])
            result.rows.append(row)
            continue
        mine = times[config.name]
        med = statistics.median(t["total_s"] for t in mine)
        ratios = [m["total_s"] / b["total_s"] for m, b in zip(mine, base)] if base else []
        if config.base != "nll" and config.base in times and config.base not in errors:
            other = [m["total_s"] / b["total_s"] for m, b in zip(mine, times[config.base])]
            row.update(base=config.base, ratio_to_base=statistics.median(other),
                       ratio_to_base_min=min(other), ratio_to_base_max=max(other))
        row.update(median_s=med, repeats=len(mine),
                   ratio_to_nll=statistics.median(ratios) if ratios else None,
                   ratio_min=min(ratios) if ratios else None,
                   ratio_max=max(ratios) if ratios else None,
                   peak_bytes=peaks.get(config.name),
                   **{f"share_{s}": statistics.median(t[s] for t in mine) / med
                      for s in SHARES})
        result.rows.append(row)
    return result


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def step_table(result: BenchResult):
    """The full-step rows as a rich table."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="full optimizer steps (ratio to a plain NLL step in the same run)")
    for col in ("config", "median", "× nll (min–max)", "× base", "peak MiB", *SHARES):
        table.add_column(col)
    for r in result.rows:
        if r["status"] != "ok":
            table.add_row(escape(r["config"]), f"[red]{escape(r['reason'])}[/]")
            continue
        peak = "—" if r.get("peak_bytes") is None else f"{r['peak_bytes'] / 2 ** 20:,.0f}"
        base = "—" if "base" not in r else (
            f"{r['ratio_to_base']:.2f} ({r['ratio_to_base_min']:.2f}–"
            f"{r['ratio_to_base_max']:.2f}) × {escape(r['base'])}")
        table.add_row(escape(r["config"]), f"{r['median_s']:.3f} s",
                      f"{r['ratio_to_nll']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})",
                      base, peak, *(f"{100 * r[f'share_{s}']:.0f}%" for s in SHARES))
    return table
