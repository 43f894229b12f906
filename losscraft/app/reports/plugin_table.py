"""Rendering of `losscraft.plugins.registry.Registry.report` for ``losscraft plugins`` (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _provider(p: dict[str, str]) -> str:
    dist = " ".join(x for x in (p["distribution"], p["version"]) if x)
    return f"{p['plugin']}" + (f" ({dist})" if dist else "")


def print_report(report: dict[str, Any], console: Console) -> None:
    """Print the plugins table, then clashes, overrides and unmatched load-filter entries."""
    table = Table(title="losscraft plugins")
    for column in ("plugin", "distribution", "version", "provides"):
        table.add_column(column)
    for row in report["plugins"]:
        provides = ", ".join(
            f"{c['kind']}:{c['name']}" + (f" (also: {', '.join(c['aliases'])})"
                                          if c["aliases"] else "")
            for c in row["components"])
        if row["error"]:
            provides = "[red]failed (see below)[/]"
        table.add_row(row["name"], row["distribution"], row["version"], provides)
    console.print(table)
    for row in report["plugins"]:
        if row["error"]:
            console.print(f"[bold red]failed:[/] plugin '{escape(row['name'])}' "
                          f"({escape(row['distribution'])} {escape(row['version'])}): "
                          f"{escape(row['error'])} (--debug: traceback)", highlight=False,
                          soft_wrap=True)
            if row.get("traceback"):
                console.print(escape(row["traceback"]), highlight=False, soft_wrap=True)
    for clash in report["clashes"]:
        console.print(f"[bold red]clash:[/] {escape(clash['message'])}", highlight=False,
                      soft_wrap=True)
    for o in report["overrides"]:
        replaced = ", ".join(_provider(p) for p in o["replaced"])
        console.print(f"[yellow]override:[/] {o['kind']} '{o['name']}' from "
                      f"{escape(_provider(o['winner']))} replaces {escape(replaced)} "
                      f"({o['reason']})", highlight=False)
    for plugin, error in report.get("command_errors", {}).items():
        console.print(f"[bold red]commands:[/] plugin '{escape(plugin)}': {escape(error)}",
                      highlight=False, soft_wrap=True)
    for entry in report["unmatched"]:
        console.print(f"[yellow]warning:[/] LOSSCRAFT_LOAD_PLUGINS entry '{escape(entry)}' "
                      "matches no installed plugin", highlight=False)
