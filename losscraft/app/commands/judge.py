"""The ``losscraft score`` and ``losscraft judge`` commands (added to the main group by
`losscraft.app.main`): audit a scorer on your own (context, reply) pairs, and see the default judge's
measured quality. Thin: parse, call, print."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from losscraft.app.friendly_errors import friendly_errors
from losscraft.plugins.protocols import prosocial_method
from losscraft.data.jsonl import context_turns, iter_jsonl
from losscraft.errors import DataError
from losscraft.app.commands.options import parse_params
from losscraft.recipe.schema import DEFAULT_SCORER

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
    from losscraft.plugins.registry import get_registry

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


def surface_floor_of(metrics: dict, name: str = "default"):
    """The surface floor saved with a judge (fitted on its training pairs), else fitted now on
    the training data of the shipped judge ``name``."""
    from losscraft.judge.surface import SurfaceFloor, fit_surface_floor

    if metrics.get("surface_floor"):
        return SurfaceFloor.from_dict(metrics["surface_floor"])
    from losscraft.judge.data import load_pairs
    from losscraft.recipe.parse import load_classifier_recipe
    from losscraft.judge.default import judge_recipe_path
    from losscraft.plugins.registry import get_registry

    recipe = load_classifier_recipe(judge_recipe_path(name))
    return fit_surface_floor(load_pairs(recipe.data, recipe.path, get_registry(), "data"))


def probe_report(pairs, scorers: dict) -> dict[str, dict]:
    """`probe_metrics` of each scorer (name -> object with ``p_unsafe``) on ``pairs``."""
    from losscraft.judge.probe import probe_metrics

    contexts, replies = [p.context for p in pairs], [p.reply for p in pairs]
    found = {}
    for name, scorer in scorers.items():
        scores = score_pairs(scorer, contexts, replies)
        found[name] = probe_metrics(pairs, scores["p_unsafe"], scores.get("p_prosocial"))
    return found


@click.command("judge")
@click.option("--retrain", is_flag=True, help="Train the shipped judges again into the cache.")
@click.option("--probe", "probe_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Measure on this probe file instead of the shipped one (same format).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def judge_command(retrain: bool, probe_file: Path | None, as_json: bool) -> None:
    """Where the shipped safety judges live and how good they are: held-out metrics, and the
    probe set (written apart from their training data) beside the surface floor (the best rule
    reading only reply length and '?', fitted on the training data), profanity_check and the
    majority baseline, with accuracy per kind of reply and the quality bars the judge misses."""
    from losscraft.judge.default import judge_dir
    from losscraft.judge.probe import (FLOOR_MARGIN, KIND_TARGET, TARGETS, kind_table,
                                       load_probe, target_failures)
    from losscraft.plugins.registry import get_registry

    folders = {name: judge_dir(name, console=console, retrain=retrain)
               for name in ("default", "second")}
    saved = {name: json.loads((f / "metrics.json").read_text()) for name, f in folders.items()}
    pairs = load_probe(probe_file)
    registry = get_registry()
    floor = surface_floor_of(saved["default"])
    scorers = {"safety_judge": registry.create("scorer", "safety_judge",
                                               {"path": str(folders["default"] / "final")}),
               "second judge": registry.create("scorer", "safety_judge",
                                               {"path": str(folders["second"] / "final")}),
               "surface floor": floor,
               "profanity_check": registry.create("scorer", "profanity_check", {})}
    probe = probe_report(pairs, scorers)
    misses = target_failures(probe["safety_judge"], probe["surface floor"])
    report = {"judge": str(folders["default"] / "final"),
              "second_judge": str(folders["second"] / "final"),
              "heldout": saved["default"].get("heldout"),
              "heldout_prosocial": saved["default"].get("heldout_prosocial"),
              "surface_floor": {"unsafe": floor.unsafe.describe(),
                                "prosocial": floor.prosocial.describe()},
              "probe": probe, "misses": misses}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    out.print(f"default judge: {report['judge']}\nsecond judge (disjoint writers): "
              f"{report['second_judge']}", highlight=False)
    table = Table(title=f"probe set: {len(pairs)} pairs written apart from the training data")
    table.add_column("metric")
    for name in probe:
        table.add_column(name, justify="right")
    for key in ("accuracy", "majority_baseline_accuracy", "unsafe_recall", "unsafe_precision",
                "prosocial_accuracy", "three_way_accuracy"):
        table.add_row(key.replace("_", " "), *(f"{m[key]:.3f}" if key in m else "-"
                                               for m in probe.values()))
    out.print(table)
    out.print(kind_table(probe))
    out.print(f"surface floor (fitted on the judge's training pairs): unsafe "
              f"{report['surface_floor']['unsafe']}; prosocial "
              f"{report['surface_floor']['prosocial']}", highlight=False)
    bars = ", ".join(f"{k.replace('_', ' ')} >= {v}" for k, v in TARGETS.items())
    out.print(f"quality bars: {bars}, every kind >= {KIND_TARGET}, each metric >= the surface "
              f"floor + {FLOOR_MARGIN}: " + ("all met" if not misses else
                                             "MISSED: " + "; ".join(misses)), highlight=False)
    held = report["heldout"] or {}
    if held:
        out.print(f"held-out split of the judge corpus (one split per situation): accuracy "
                  f"{held['accuracy']:.3f}, unsafe F1 {held['f1']:.3f} on {held['n']} pairs",
                  highlight=False)
