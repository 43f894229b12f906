"""What ``losscraft run`` does with a classifier recipe: validate, train, print where things went
and the ``[scorer]`` table that loads the result."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from losscraft.recipe.parse import load_classifier_recipe
from losscraft.judge.validate import validate_classifier_recipe
from losscraft.errors import LosscraftError


def scorer_toml(params: dict) -> str:
    """The ``[scorer]`` table that loads a trained classifier (``metrics["scorer"]``)."""
    lines = ["[scorer]"]
    for key, value in params.items():
        lines.append(f"{key} = {json.dumps(value)}")  # JSON scalars are valid TOML here
    return "\n".join(lines)


def run_classifier_file(recipe: Path, overrides: list[str], *, console: Console, out: Console,
                        overwrite: bool = False, show_progress: bool = True,
                        resume: bool = False) -> None:
    """``losscraft run`` for a recipe with a ``[classifier]`` table."""
    from losscraft.judge.train import train_classifier

    if resume:
        raise LosscraftError("--resume: a classifier recipe trains in one go; rerun it with "
                             "--overwrite instead")
    parsed = load_classifier_recipe(recipe, overrides)
    validate_classifier_recipe(parsed)
    result = train_classifier(parsed, console=console, show_progress=show_progress,
                              overwrite=overwrite)
    table = Table(title="written", show_header=False)
    table.add_row("classifier", str(result.final_model))
    table.add_row("metrics", str(result.metrics_path))
    table.add_row("wall time", f"{result.metrics['wall_seconds']:.0f} s")
    out.print(table)
    out.print("use it as a scorer (eval, mining, reranker):", highlight=False)
    out.print(scorer_toml(result.metrics["scorer"]), highlight=False, markup=False)
