"""``losscraft plugins [NAME]``: what the registry loaded, from where, and what went wrong; or one
component's parameters."""

from __future__ import annotations

import json

import click

from losscraft.app.friendly_errors import friendly_errors
from losscraft.app.terminal import out


@click.command("plugins")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (full names).")
@friendly_errors
def plugins_command(name: str | None, as_json: bool) -> None:
    """List every plugin with its distribution, version and the components it provides; plugins
    that failed to load or registered nothing, name clashes, overrides of built-ins, unmatched
    LOSSCRAFT_LOAD_PLUGINS entries.

    With NAME (a component, or KIND:NAME when several kinds have one of that name): its
    parameters with their types, defaults and descriptions.
    """
    from losscraft.app.reports.plugin_table import print_component, print_report
    from losscraft.plugins.registry import get_registry

    registry = get_registry()
    if name is not None:
        from losscraft.plugins.describe import describe_component, find_component

        info = describe_component(find_component(registry, name))
        if as_json:
            click.echo(json.dumps(info, indent=2))
        else:
            print_component(info, out)
        return
    report = registry.report()
    if not click.get_current_context().find_root().params.get("debug"):  # tracebacks: --debug
        for row in report["plugins"]:
            row.pop("traceback", None)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_report(report, out)
