"""The recipe commands: ``losscraft validate``, ``losscraft run`` and ``losscraft run-all``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from losscraft.app.commands.options import set_option
from losscraft.app.friendly_errors import friendly_errors
from losscraft.app.terminal import console, out


@click.command("validate")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@friendly_errors
def validate_command(recipe: Path, overrides: tuple[str, ...]) -> None:
    """Check RECIPE without loading any weights: keys, types, plugin names and parameters,
    paths that must exist."""
    from losscraft.recipe.parse import (is_classifier_recipe_file, load_classifier_recipe,
                                        load_recipe_collecting)
    from losscraft.recipe.tables import raise_all
    from losscraft.judge.validate import validate_classifier_recipe
    from losscraft.recipe import validate_recipe

    if is_classifier_recipe_file(recipe):  # [classifier]: trains a safety classifier
        notes = validate_classifier_recipe(load_classifier_recipe(recipe, list(overrides)))
    else:  # structural problems and those of every plugin that did parse, all together
        parsed, problems = load_recipe_collecting(recipe, list(overrides))
        if parsed is None:
            raise_all(problems)
        notes = validate_recipe(parsed, problems=problems)
    for note in notes:
        out.print(f"  [green]✓[/] {note}", highlight=False)
    out.print(f"[bold green]{recipe} is valid[/]")


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in the output folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in the output folder.")
@click.option("--force-recipe", is_flag=True,
              help="With --resume: continue even though the run folder or checkpoint lacks the "
                   "recipe it was trained with (the recipe as given is then unchecked).")
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@click.option("--no-report", is_flag=True, help="Skip the before/after summary at the end.")
@click.option("--stop-after", type=int, default=None, hidden=True,
              help="Stop after N optimizer steps with a checkpoint (for testing resume).")
@friendly_errors
def run_command(recipe: Path, overrides: tuple[str, ...], resume: bool, overwrite: bool,
        force_recipe: bool, no_progress: bool, no_report: bool, stop_after: int | None) -> None:
    """Train everything RECIPE describes, stage by stage; print where results were written."""
    from losscraft.recipe.parse import is_classifier_recipe_file
    from losscraft.recipe.instantiate import build_recipe
    from losscraft.recipe import load_recipe
    from losscraft.trainer import Trainer

    if is_classifier_recipe_file(recipe):  # [classifier]: trains a safety classifier
        from losscraft.app.commands.train_judge import run_classifier_file
        run_classifier_file(recipe, list(overrides), console=console, out=out,
                            overwrite=overwrite, show_progress=not no_progress, resume=resume)
        return

    parsed = load_recipe(recipe, list(overrides))
    built = build_recipe(parsed)  # what `validate` checks is what trains
    trainer = Trainer(parsed, console=console, stop_after=stop_after, overwrite=overwrite,
                      show_progress=not no_progress, built=built, force_recipe=force_recipe)
    result = trainer.run(resume=resume)
    if not trainer.parallel.is_main:  # data parallel: rank 0 alone summarises and prints
        return
    if result.stopped_early:
        out.print(f"stopped early; continue with: losscraft run {recipe} --resume")
        return
    if parsed.report.enabled and not no_report:
        from losscraft.app.summary import print_run_summary
        from losscraft.runtime.safe_files import refuse_link

        for name in ("summary.json", "summary.md", "summary"):  # never written through a link
            refuse_link(result.output_dir / name)
        print_run_summary(built, result, console=out, show_progress=not no_progress)
    table = Table(title="written", show_header=False)
    table.add_row("final model", str(result.final_model))
    for name, path in result.stage_models.items():
        table.add_row(f"stage {name}", str(path))
    table.add_row("metrics", str(result.metrics))
    out.print(table)


@click.command("run-all")
@click.argument("recipes", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--overwrite", is_flag=True, help="Replace existing runs in the output folders.")
@click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
@friendly_errors
def run_all(recipes: tuple[Path, ...], overrides: tuple[str, ...], overwrite: bool,
            no_progress: bool) -> None:
    """Train several RECIPES with the same overrides (same data and seed), then print their
    final loss terms side by side, e.g. the FlatGD baselines:

    \b
      losscraft run-all recipes/clean.toml recipes/unlikelihood.toml recipes/cringe.toml \\
          recipes/safety_loss.toml recipes/flatgd.toml --set stages.main.max_steps=4
    """
    from losscraft.recipe import load_recipe, validate_recipe
    from losscraft.trainer import Trainer

    parsed = [load_recipe(path, list(overrides)) for path in recipes]
    for recipe in parsed:  # fail on any recipe before training the first
        validate_recipe(recipe)
    finals = {}
    for recipe in parsed:
        console.rule(recipe.run.name)
        result = Trainer(recipe, console=console, overwrite=overwrite,
                         show_progress=not no_progress).run()
        finals[recipe.run.name] = result.last_metrics.get(recipe.stages[-1].name, {})
    out.print(final_terms_table(finals))


def final_terms_table(finals: dict[str, dict]) -> Table:
    """Loss terms of each run's last optimizer step, one column per run."""
    keys = sorted({k for record in finals.values() for k in record
                   if isinstance(record[k], float) and k not in ("lr", "step_seconds",
                                                               "tokens_per_s")})
    table = Table(title="final step, last stage")
    table.add_column("metric")
    for name in finals:
        table.add_column(name, justify="right")
    for key in keys:
        table.add_row(key, *(f"{finals[n][key]:.4g}" if key in finals[n] else "-" for n in finals))
    return table
