"""The built-in extra commands, registered through the same ``register_commands`` hook a plugin
uses: each lives beside its subsystem (evaluation, generation, the judge, benchmarks, the
scaffold) and is added to the ``losscraft`` group here."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from losscraft.cli_support import friendly_errors
from losscraft.hookspecs import hookimpl

#: module -> command objects it defines
COMMANDS = (("losscraft.cli", ("run_all",)),
            ("losscraft.evaluation.cli", ("eval_command", "compare_command")),
            ("losscraft.generate_cli", ("generate_command",)),
            ("losscraft.judge.cli", ("score_command", "judge_command")),
            ("losscraft.bench.cli", ("bench_command",)),
            ("losscraft.builtin_commands", ("new_plugin_command",)))


@click.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(["objective", "data", "scorer", "reranker", "rot",
                                           "model"]), default="objective", show_default=True,
              help="What the plugin provides.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where to create the package folder NAME.")
@friendly_errors
def new_plugin_command(name: str, kind: str, parent: Path) -> None:
    """Write a working plugin package NAME (pyproject with the entry point, the component, a test
    using losscraft.testing, a README); its tests pass after `pip install -e NAME`."""
    from losscraft.scaffold import module_name, new_plugin

    folder = new_plugin(name, kind, parent)
    click.echo(f"wrote {folder}/ — component '{module_name(name)}' ({kind})\n"
               f"next: pip install -e {folder} && (cd {folder} && pytest)")


@hookimpl
def register_commands(cli):
    for module, names in COMMANDS:
        mod = importlib.import_module(module)
        for name in names:
            cli.add_command(getattr(mod, name))
