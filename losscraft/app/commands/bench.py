"""``losscraft bench``: loss-head throughput / memory microbenchmarks and full-step costs."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from losscraft.app.friendly_errors import friendly_errors

console = Console(stderr=True)
out = Console() if sys.stdout.isatty() else Console(width=200)  # files and pipes: no wrapping


def _progress(disabled: bool):
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, disable=disabled, transient=True)


@click.command("bench")
@click.option("--tokens", default="512,2048", show_default=True,
              help="Scored positions per point, comma-separated (8k = 8192).")
@click.option("--vocab", default="49152", show_default=True, help="Vocabulary sizes.")
@click.option("--dtype", "dtypes", default="fp32", show_default=True,
              help="Input dtypes: fp32, bf16, fp16, fp64.")
@click.option("--device", "devices", default="cpu", show_default=True,
              help="Devices: cpu, cuda, cuda:1 ...")
@click.option("--experts", default="2", show_default=True,
              help="Experts compared by the js head (objectives use the experts they declare).")
@click.option("--input", "inputs", default="logits,hidden", show_default=True,
              help="What the head is given: logits, or hidden states + output weight.")
@click.option("--hidden", default=576, show_default=True, help="Hidden size for --input hidden.")
@click.option("--impl", "impl_patterns", multiple=True, metavar="NAME",
              help="objective, objective:variant or :variant (repeatable; default: all). With "
                   "--full-step: configuration name prefixes (nll, safety_loss, flatgd-exact...).")
@click.option("--compare", nargs=2, metavar="A B", default=None,
              help="Two implementations side by side, timed alternately (objective:variant; a "
                   "bare objective name means its :plugin variant).")
@click.option("--param", "params", multiple=True, metavar="NAME.KEY=VALUE",
              help="A parameter of objective NAME's factory (TOML value; repeatable), e.g. "
                   "--param token_focal.gamma=2.0.")
@click.option("--peers", is_flag=True,
              help="Add the installed peer libraries (Liger, TRL, pytorch-metric-learning; "
                   "pip install 'losscraft[peers]') and print their ratios to losscraft's.")
@click.option("--quick", is_flag=True, help="A CI-sized grid (64 tokens, V=512, H=64, fp32).")
@click.option("--warmup", default=2, show_default=True, help="Untimed runs before timing.")
@click.option("--repeats", default=7, show_default=True, help="Timed runs per point.")
@click.option("--memory", default="subprocess", show_default=True,
              type=click.Choice(["subprocess", "inprocess", "off"]),
              help="CPU peak memory: a fresh process per point, this process, or not at all.")
@click.option("--no-check", is_flag=True, help="Skip the correctness check against the reference.")
@click.option("--full-step", is_flag=True,
              help="Time one optimizer step of each objective on a model instead (see --model).")
@click.option("--model", "model_name", default="tiny", show_default=True,
              type=click.Choice(["tiny", "embedded"]), help="Model of --full-step.")
@click.option("--rows", default=4, show_default=True,
              help="Rows (dialogues) per micro-batch of --full-step.")
@click.option("--row-length", default="short", show_default=True,
              type=click.Choice(["short", "recipe"]),
              help="Rows of --full-step: the bench's short dialogues (≈ 60 positions) or rows "
                   "filled to the recipes' limits (192 context + 48 response tokens).")
@click.option("--out", "out_path", type=click.Path(path_type=Path), default=None,
              help="Write JSON + CSV here (a folder, or a file stem).")
@click.option("--list", "list_only", is_flag=True, help="List the implementations and exit.")
@click.option("--no-progress", is_flag=True, help="Do not draw a progress bar.")
@friendly_errors
def bench_command(tokens, vocab, dtypes, devices, experts, inputs, hidden, impl_patterns,
                  compare, params, peers, quick, warmup, repeats, memory, no_check, full_step,
                  model_name, rows, row_length, out_path, list_only, no_progress) -> None:
    """Benchmark loss heads (forward + backward): every registered objective, naive / chunked /
    fused, over tokens × vocabulary × dtype × device × experts; median and spread, tokens/s,
    peak memory, correctness against the naive reference. See benchmarks/RESULTS.md.

    \b
    Examples:
      losscraft bench --quick
      losscraft bench --impl safety_loss --tokens 512,8k --input hidden
      losscraft bench --compare safety_loss:fused safety_loss:naive --input hidden
      losscraft bench --impl js --peers --input hidden --experts 1
      losscraft bench --impl token_focal --param token_focal.gamma=2.0
      losscraft bench --full-step --model tiny
    """
    from losscraft.bench import grid as g
    from losscraft.app.reports import bench_report as report
    from losscraft.bench.impls import discover, select
    from losscraft.bench.runner import Options, machine_meta, run_compare, run_grid
    from losscraft.runtime.malloc import keep_freed_memory
    from losscraft.plugins.registry import get_registry

    keep_freed_memory()  # CPU steps reuse freed buffers instead of re-faulting them
    command = "losscraft bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    registry = get_registry()
    from losscraft.bench.params import parse_params
    discover_args = {"params": parse_params(params), "peers": peers}
    impls = discover(registry, **discover_args)
    if list_only:
        for impl in impls:
            note = f"  [red]{impl.error}[/]" if impl.error else ""
            out.print(f"{impl.name:32} inputs={','.join(impl.inputs)} "
                      f"devices={','.join(impl.devices)}{note}", highlight=False)
        return
    devs = tuple(g.check_device(d.strip()) for d in devices.split(",") if d.strip())
    if not devs:
        raise g.BenchError("--device: give at least one device")
    if full_step:
        from losscraft.bench.fullstep import run_full_step, step_table
        result = run_full_step(model_name, device=devs[0], patterns=impl_patterns or None,
                               repeats=repeats, warmup=warmup, rows=rows, registry=registry,
                               meta=machine_meta(devs, command), row_length=row_length,
                               progress_factory=lambda n: _progress(no_progress))
        out.print(step_table(result))
        _write(result, out_path)
        return
    if quick:
        q = g.QUICK
        tok, voc, dts, ins, exps, hid = (q["tokens"], q["vocab"], q["dtypes"], q["inputs"],
                                          q["experts"], q["hidden"])
        warmup, repeats = min(warmup, 1), min(repeats, 3)
    else:
        tok, voc = g.parse_ints(tokens, "tokens"), g.parse_ints(vocab, "vocab")
        dts = g.parse_choices(dtypes, "dtype", g.DTYPES)
        ins = g.parse_choices(inputs, "input", g.INPUTS)
        exps, hid = g.parse_ints(experts, "experts"), hidden
    points = g.make_grid(tok, voc, dts, devs, exps, ins, hid)
    options = Options(warmup=warmup, repeats=repeats, memory=memory, check=not no_check,
                      discover=discover_args)
    meta = machine_meta(devs, command)
    if compare:
        a, b = (select(impls, (name,))[0] for name in _exact(compare))
        total = len(points)
    else:
        chosen = select(impls, tuple(impl_patterns) or None)
        total = len(points) * len(chosen)
    with _progress(no_progress) as bar:
        task = bar.add_task("benchmarking", total=total)

        def step(label: str) -> None:
            bar.update(task, advance=1, description=label)

        if compare:
            result = run_compare(points, a, b, options, all_impls=impls, registry=registry,
                                 meta=meta, progress=step)
        else:
            result = run_grid(points, chosen, options, all_impls=impls, registry=registry,
                              meta=meta, progress=step)
    out.print(report.rows_table(result))
    if result.comparisons:
        out.print(report.compare_table(result))
    peer_table = report.peers_table(result) if peers else None
    if peer_table is not None:
        out.print(peer_table)
    _write(result, out_path)
    from losscraft.bench.params import check_something_ran
    check_something_ran(result)


def _write(result, out_path: Path | None) -> None:
    if out_path is None:
        return
    from losscraft.app.reports import bench_report as report
    for path in report.write_all(result, out_path):
        out.print(f"wrote {path}", highlight=False)


def _exact(names):
    """``--compare`` names: a bare objective name means its ``:plugin`` variant."""
    return tuple(name if ":" in name else f"{name}:plugin" for name in names)

