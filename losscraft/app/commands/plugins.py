"""``losscraft plugins``: what the registry loaded, from where, and what went wrong."""

from __future__ import annotations

import json

import click

from losscraft.app.friendly_errors import friendly_errors
from losscraft.app.terminal import out


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def plugins_command(as_json: bool) -> None:
    """List every plugin with its distribution, version and the components it provides; plugins
    that failed to load, name clashes, overrides of built-ins, unmatched LOSSCRAFT_LOAD_PLUGINS
    entries."""
    from losscraft.plugins.registry import get_registry
    from losscraft.app.reports.plugin_table import print_report

    report = get_registry().report()
    if not click.get_current_context().find_root().params.get("debug"):  # tracebacks: --debug
        for row in report["plugins"]:
            row.pop("traceback", None)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_report(report, out)
