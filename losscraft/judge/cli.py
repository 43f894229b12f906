"""The ``losscraft score`` and ``losscraft judge`` commands (added to the main group by
`losscraft.cli`): audit a scorer on your own (context, reply) pairs, and see the default judge's
measured quality. Thin: parse, call, print."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from losscraft.cli_support import friendly_errors
from losscraft.components import prosocial_method
from losscraft.data.jsonl import context_turns, iter_jsonl
from losscraft.errors import DataError
from losscraft.evaluation.cli import parse_params
from losscraft.judge.default import DEFAULT_SCORER

console = Console(stderr=True)
out = Console()


def read_pairs(path: Path) -> tuple[list[dict], list[list[str]], list[str]]:
    """``(records, contexts, replies)`` of a pairs file: one ``{"context": str | [turns],
    "reply": str}`` per line; other fields are kept. Errors name the file, row and field."""
    records, contexts, replies = [], [], []
    for row, record in iter_jsonl(path):
        if not isinstance(record, dict):
            raise DataError("expected a JSON object", file=str(path), row=row)
        context = context_turns(record.get("context", []), file=str(path), row=row,
                                allow_empty=True)
        if not isinstance(record.get("reply"), str):
            raise DataError("expected a string", file=str(path), row=row, field="reply")
        records.append(record)
        contexts.append(context)
        replies.append(record["reply"])
    if not records:
        raise DataError("no pairs in the file", file=str(path))
    return records, contexts, replies


def score_pairs(scorer, contexts: list[list[str]], replies: list[str]) -> dict[str, list[float]]:
    """``{"p_unsafe": [...]}`` plus ``"p_prosocial"`` when the scorer gives it."""
    scores = {"p_unsafe": scorer.p_unsafe(contexts, replies)}
    p_prosocial = prosocial_method(scorer)
    if p_prosocial is not None:
        scores["p_prosocial"] = p_prosocial(contexts, replies)
    return scores


@click.command("score")
@click.argument("pairs", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--scorer", default=DEFAULT_SCORER, show_default=True,
              help="Registered scorer (the default judge unless given).")
@click.option("--scorer-param", "scorer_params", multiple=True, metavar="KEY=VALUE",
              help="Parameter of --scorer (repeatable), e.g. path=runs/safety_judge/final.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the scored lines here instead of standard output.")
@friendly_errors
def score_command(pairs: Path, scorer: str, scorer_params: tuple[str, ...],
                  out_file: Path | None) -> None:
    """Score every line of PAIRS, a JSONL file of {"context": str | [turns], "reply": str}:
    write the same lines with p_unsafe added (and p_prosocial when the scorer gives one)."""
    from losscraft.plugins import get_registry

    records, contexts, replies = read_pairs(pairs)
    scorer_obj = get_registry().create("scorer", scorer,
                                       parse_params(scorer_params, "--scorer-param"))
    scores = score_pairs(scorer_obj, contexts, replies)
    lines = [json.dumps({**record, **{k: round(v[i], 6) for k, v in scores.items()}},
                        ensure_ascii=False) for i, record in enumerate(records)]
    if out_file is None:
        click.echo("\n".join(lines))
        return
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(out_file)
    flagged = sum(p > 0.5 for p in scores["p_unsafe"])
    console.print(f"scored {len(lines)} pairs with {scorer} ({flagged} with P(unsafe) > 0.5) "
                  f"-> {out_file}")


@click.command("judge")
@click.option("--retrain", is_flag=True, help="Train the default judge again into the cache.")
@click.option("--probe", "probe_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Measure on this probe file instead of the shipped one (same format).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def judge_command(retrain: bool, probe_file: Path | None, as_json: bool) -> None:
    """Where the default safety judge lives and how good it is: held-out metrics and the probe
    set (written apart from its training data), next to the profanity_check lexical floor."""
    from losscraft.judge.default import default_judge_dir
    from losscraft.judge.probe import load_probe, probe_metrics
    from losscraft.plugins import get_registry

    folder = default_judge_dir(console=console, retrain=retrain)
    saved = json.loads((folder / "metrics.json").read_text())
    pairs = load_probe(probe_file)
    contexts, replies = [p.context for p in pairs], [p.reply for p in pairs]
    registry = get_registry()
    report = {"judge": str(folder / "final"), "heldout": saved.get("heldout"),
              "heldout_prosocial": saved.get("heldout_prosocial"), "probe": {}}
    for name, params in (("safety_judge", {"path": str(folder / "final")}),
                         ("profanity_check", {})):
        scores = score_pairs(registry.create("scorer", name, params), contexts, replies)
        report["probe"][name] = probe_metrics(pairs, scores["p_unsafe"], scores.get("p_prosocial"))
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    out.print(f"default judge: {report['judge']}", highlight=False)
    table = Table(title=f"probe set: {len(pairs)} pairs written apart from the training data")
    table.add_column("metric")
    for name in report["probe"]:
        table.add_column(name, justify="right")
    for key in ("accuracy", "majority_baseline_accuracy", "unsafe_recall", "unsafe_precision",
                "prosocial_accuracy", "three_way_accuracy"):
        table.add_row(key.replace("_", " "), *(f"{m[key]:.3f}" if key in m else "-"
                                               for m in report["probe"].values()))
    out.print(table)
    held = report["heldout"] or {}
    if held:
        out.print(f"held-out split of the training sources: accuracy {held['accuracy']:.3f}, "
                  f"unsafe F1 {held['f1']:.3f} on {held['n']} pairs", highlight=False)
