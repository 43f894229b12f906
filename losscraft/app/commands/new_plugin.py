"""``losscraft new-plugin``: write a working plugin package to start from, or add a component to
one."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from losscraft.app.friendly_errors import friendly_errors


@click.command("new-plugin")
@click.argument("name", required=False)
@click.option("--kind", type=click.Choice(["objective", "data", "scorer", "reranker", "rot",
                                           "model"]), default="objective", show_default=True,
              help="What the component is.")
@click.option("--component", help="The component's name (its module and entry point too); "
                                  "default: the package's import name.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where to create the package folder NAME.")
@click.option("--add-to", "add_to", type=click.Path(file_okay=False, path_type=Path),
              help="Add the component (module, entry point, test) to this package, written "
                   "earlier by new-plugin, instead of writing a new one.")
@friendly_errors
def new_plugin_command(name: str | None, kind: str, component: str | None, parent: Path,
                       add_to: Path | None) -> None:
    """Write a working plugin package NAME (a pip package name, e.g. my-losses): pyproject with
    the entry point, the component module, a test using losscraft.testing, a README; its tests
    pass after `pip install -e NAME`. With --add-to PATH --component NAME: add a component to
    that package.

    \b
    losscraft new-plugin my-losses --kind objective --component token_focal
    losscraft new-plugin --add-to my-losses --kind data --component jsonl_dialogs
    """
    from losscraft.app.scaffold import add_component, new_plugin

    if add_to is not None:
        if name is not None:
            raise click.UsageError("give either NAME (a new package) or --add-to PATH")
        if not component:
            raise click.UsageError("--add-to needs --component NAME")
        add_component(add_to, kind, component)
        folder = shlex.quote(str(add_to))
        click.echo(f"added {kind} '{component}' to {add_to}/ (module, entry point, test)\n"
                   f"next: losscraft install -e {folder} (the new entry point needs a "
                   f"reinstall) && (cd {folder} && pytest)")
        return
    if name is None:
        raise click.UsageError("give NAME (a new package) or --add-to PATH")
    folder_path = new_plugin(name, kind, parent, component=component)
    from losscraft.app.scaffold import module_name

    folder = shlex.quote(str(folder_path))
    click.echo(f"wrote {folder_path}/ — {kind} '{component or module_name(name)}'\n"
               f"next: losscraft install -e {folder} && (cd {folder} && pytest)")
