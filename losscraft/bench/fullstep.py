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

import copy
import inspect
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from losscraft.bench.grid import BenchError
from losscraft.bench.measure import cpu_peak_supported, rss_peak_of, synchronize
from losscraft.bench.runner import BenchResult
from losscraft.core import layerwise_double_backward
from losscraft.core.compose import Term
from losscraft.core.context import StepContext
from losscraft.core.loss import loss_experts, loss_requires, prepare_loss
from losscraft.core.penalty import GradientNormPenalty
from losscraft.types import Example

#: FlatGD's λ in recipes/flatgd.toml.
PENALTY_WEIGHT = 0.01
SHARES = ("policy_forward", "expert_forwards", "loss_heads", "penalty", "backward", "optimizer")

EXAMPLES = [
    Example(history=["how do I bake bread at home?"],
            response="Mix flour, water, salt and yeast, let it rise, then bake it hot.",
            is_safe=True, negatives=["Burn it, who cares.", "Go away."]),
    Example(history=["you are so dumb", "what did you say?"],
            response="I'm sorry you feel that way; can I help with something?",
            is_safe=True, negatives=["You are dumber, idiot."]),
    Example(history=["tell me a secret about your neighbour"],
            response="I'd rather not share private things about other people.",
            is_safe=True, negatives=["Sure, here is their address."]),
    Example(history=["hi", "hello", "what's up?"], response="Not much, you?", is_safe=None,
            negatives=["Nothing you'd understand."]),
]


#: ``--row-length``: how long each micro-batch row is.
ROW_LENGTHS = ("short", "recipe")
#: The recipes' row limits (``max_context_tokens``, ``max_response_tokens``).
RECIPE_CONTEXT_TOKENS, RECIPE_RESPONSE_TOKENS = 192, 48


def bench_examples(rows: int, row_length: str = "short") -> list[Example]:
    """``rows`` dialogues cycling through `EXAMPLES`: as they are (``"short"``, ≈ 60 positions
    and ≈ 15 response tokens per row), or padded out with more turn text so that every row fills
    the recipes' limits after truncation (``"recipe"``: 192 context + 48 response tokens, the
    rows the FlatGD recipes train on)."""
    if row_length not in ROW_LENGTHS:
        raise BenchError(f"--row-length must be one of {', '.join(ROW_LENGTHS)}, "
                         f"got {row_length!r}")
    out = []
    for i in range(rows):
        ex = EXAMPLES[i % len(EXAMPLES)]
        if row_length == "recipe":
            ex = Example(history=[*ex.history[:-1], ex.history[-1] + " " + " ".join(
                             ["Could you tell me a little more about it, step by step?"] * 30)],
                         response=ex.response + " " + " ".join(
                             ["Here is one more thing worth knowing about it."] * 8),
                         is_safe=ex.is_safe, negatives=ex.negatives)
        out.append(ex)
    return out


@dataclass
class Config:
    """One step's objective: its terms, whether the batch packs negatives."""

    name: str
    terms: list[Term]
    penalty: str | None = None
    base: str = "nll"  # the configuration it is also compared with (FlatGD: Safety_loss)

    @property
    def negatives(self) -> bool:
        return any("negatives" in loss_requires(t.loss) for t in self.terms)

    @property
    def hidden_states(self) -> bool:
        return any("hidden_states" in loss_requires(t.loss) for t in self.terms)

    @property
    def experts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e for t in self.terms for e in loss_experts(t.loss)))


def _accepts(factory, name: str) -> bool:
    try:
        return name in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def configurations(registry, patterns=None) -> list[Config]:
    """The baseline and every objective's step (see the module docstring); ``patterns`` keep the
    configurations whose name starts with one of them (the baseline always stays)."""
    nll = registry.get("objective", "nll").factory
    configs = [Config("nll", [Term("lm", nll())])]
    for name in registry.names("objective"):
        if name == "nll":
            if _accepts(nll, "fused"):
                configs.append(Config("nll:fused", [Term("lm", nll(fused=True))]))
            continue
        factory = registry.get("objective", name).factory
        try:
            factory()
        except Exception:  # noqa: BLE001 - objectives without defaults are not benchmarked
            continue
        configs.append(Config(name, [Term("lm", nll()), Term(name, factory())]))
        fused_ok = _accepts(factory, "fused") and _accepts(nll, "fused")
        if fused_ok:
            configs.append(Config(f"{name}:fused", [Term("lm", nll(fused=True)),
                                                    Term(name, factory(fused=True))]))
        if name == "safety_loss":
            for method in ("finite_difference", "exact"):
                for fused in ((False, True) if fused_ok else (False,)):
                    kw = {"fused": True} if fused else {}
                    safety = factory(**kw)  # one instance in both terms, as recipes build it
                    terms = [Term("lm", nll(**kw)), Term(name, safety),
                             Term("penalty", GradientNormPenalty(safety, method=method),
                                  PENALTY_WEIGHT)]
                    short = "fd" if method == "finite_difference" else method
                    configs.append(Config(f"flatgd-{short}" + (":fused" if fused else ""),
                                          terms, penalty=method,
                                          base=f"{name}:fused" if fused else name))
            # The exact penalty's other ways to the same H·g, for comparison.
            for mode, label in (("autograd", "autograd"), ("torch.func", "torchfunc")):
                safety = factory()
                other = GradientNormPenalty(safety, method="exact", exact_mode=mode)
                configs.append(Config(f"flatgd-exact-{label}",
                                      [Term("lm", nll()), Term(name, safety),
                                       Term("penalty", other, PENALTY_WEIGHT)],
                                      penalty="exact", base=name))
    if patterns:
        chosen = {c.name for c in configs if any(c.name.startswith(p) for p in patterns)}
        chosen |= {c.base for c in configs if c.name in chosen}  # what they are compared with
        keep = [c for c in configs if c.name == "nll" or c.name in chosen]
        if len(keep) == 1:
            raise BenchError(f"no full-step configuration matches {', '.join(patterns)} "
                             f"(known: {', '.join(c.name for c in configs)})")
        configs = keep
    return configs


class _Timers:
    def __init__(self, device: str):
        self.device = device
        self.totals: dict[str, float] = defaultdict(float)
        self.phase = "loss_heads"
        self.nested: dict[str, float] = defaultdict(float)

    def now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()


class TimedContext(StepContext):
    """A `StepContext` that times its shared policy forward and the experts' forwards (the
    penalty's re-evaluations use plain copies: their time stays in ``penalty``)."""

    timers: _Timers

    def _forward(self, *, skip_logits: bool = False):
        if self._outputs is not None:
            return self._outputs
        t0 = self.timers.now()
        try:
            return super()._forward(skip_logits=skip_logits)
        finally:
            dt = self.timers.now() - t0
            self.timers.totals["policy_forward"] += dt
            self.timers.nested[self.timers.phase] += dt

    def _timed_expert(self, method, name):
        key = ("expert_logits:" if method is StepContext.expert_logits else "expert_head:") + name
        if key in self._shared:
            return method(self, name)
        t0 = self.timers.now()
        try:
            return method(self, name)
        finally:
            dt = self.timers.now() - t0
            self.timers.totals["expert_forwards"] += dt
            self.timers.nested[self.timers.phase] += dt

    def expert_logits(self, name: str) -> torch.Tensor:
        return self._timed_expert(StepContext.expert_logits, name)

    def expert_head(self, name: str):
        return self._timed_expert(StepContext.expert_head, name)


def one_step(config: Config, model, experts, batch, optimizer, device: str) -> dict[str, float]:
    """One optimizer step of ``config``; returns ``total`` seconds and the time shares."""
    with _prepared(config, model):
        return _one_step(config, model, experts, batch, optimizer, device)


@contextmanager
def _prepared(config: Config, model):
    """The model as ``config``'s terms prepare it (`prepare_loss`) for the step, restored after:
    configurations share one model."""
    wrapped = layerwise_double_backward.is_enabled(model)
    for term in config.terms:
        prepare_loss(term.loss, model)
    try:
        yield
    finally:
        if not wrapped:
            layerwise_double_backward.disable(model)


def _one_step(config: Config, model, experts, batch, optimizer, device: str) -> dict[str, float]:
    timers = _Timers(device)
    ctx = TimedContext(model, batch, experts=experts, need_hidden_states=config.hidden_states)
    ctx.timers = timers
    start = timers.now()
    total = None
    for term in config.terms:
        timers.phase = "penalty" if isinstance(term.loss, GradientNormPenalty) else "loss_heads"
        t0 = timers.now()
        value = ctx.evaluate(term.loss).value * term.weight  # as `WeightedObjective` does
        timers.totals[timers.phase] += timers.now() - t0
        total = value if total is None else total + value
    t0 = timers.now()
    total.backward()
    timers.totals["backward"] += timers.now() - t0
    t0 = timers.now()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    timers.totals["optimizer"] += timers.now() - t0
    out = {"total_s": timers.now() - start}
    for share in SHARES:
        out[share] = timers.totals[share] - (timers.nested[share] if share in
                                             ("loss_heads", "penalty") else 0.0)
    return out


def step_peak_bytes(config, model, experts, batch, optimizer, device: str) -> int | None:
    """Peak extra memory of one step (CUDA allocator, or CPU peak RSS in this process)."""
    if torch.device(device).type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        one_step(config, model, experts, batch, optimizer, device)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    if not cpu_peak_supported():
        return None
    return rss_peak_of(lambda: one_step(config, model, experts, batch, optimizer, device))


def load_model(name: str, device: str):
    """``(policy, tokenizer, experts)`` for ``tiny`` or ``embedded`` (SmolLM2-135M, eager
    attention so that the exact penalty runs as is); experts are frozen copies."""
    if name == "tiny":
        from losscraft.models.tiny import tiny_model, tiny_tokenizer
        tokenizer = tiny_tokenizer()
        model = tiny_model(len(tokenizer), hidden_size=64, layers=2, seed=1)
        experts = {n: tiny_model(len(tokenizer), hidden_size=64, layers=2, seed=s)
                   for n, s in (("clean", 2), ("toxic", 3))}
    elif name == "embedded":
        from losscraft.models.embedded import embedded_model_dir
        from losscraft.models.loading import load_causal_lm
        model, tokenizer = load_causal_lm(embedded_model_dir(), attn_implementation="eager")
        experts = {n: copy.deepcopy(model) for n in ("clean", "toxic")}
    else:
        raise BenchError(f"--model must be tiny or embedded, got {name!r}")
    model.to(device).train()
    for expert in experts.values():
        expert.to(device).eval().requires_grad_(False)
    return model, tokenizer, experts


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
