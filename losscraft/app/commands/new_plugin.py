"""``losscraft new-plugin``: write a working plugin package to start from."""

from __future__ import annotations

from pathlib import Path

import click

from losscraft.app.friendly_errors import friendly_errors


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
    from losscraft.app.scaffold import module_name, new_plugin

    folder = new_plugin(name, kind, parent)
    click.echo(f"wrote {folder}/ — component '{module_name(name)}' ({kind})\n"
               f"next: pip install -e {folder} && (cd {folder} && pytest)")
