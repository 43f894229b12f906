"""Rendering for ``losscraft plugins``: the registry's report (`Registry.report`) and one
component's parameters (`losscraft.plugins.describe.describe_component`). Both fit the console's
width: long names and texts wrap inside their cell, never cut (``--json`` has everything)."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _provider(p: dict[str, str]) -> str:
    dist = " ".join(x for x in (p["distribution"], p["version"]) if x)
    return f"{p['plugin']}" + (f" ({dist})" if dist else "")


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _note(console: Console, label: str, text: str) -> None:
    console.print(f"{label} {escape(text)}", highlight=False)


def print_report(report: dict[str, Any], console: Console) -> None:
    """Print the plugins table (one line per component), then failures, plugins that
    registered nothing, clashes, overrides and unmatched load-filter entries."""
    table = _table("losscraft plugins", "plugin", "from", "provides")
    for row in report["plugins"]:
        provides = "\n".join(
            escape(f"{c['kind'].replace('_', ' ')} {c['name']}")
            + (escape(f" (also: {', '.join(c['aliases'])})") if c["aliases"] else "")
            for c in row["components"])
        if row["error"]:
            provides = "[red]failed (see below)[/]"
        elif row.get("note"):
            provides = "[yellow]nothing (see below)[/]"
        source = " ".join(x for x in (row["distribution"], row["version"]) if x)
        table.add_row(escape(row["name"]), escape(source), provides)
    console.print(table)
    for row in report["plugins"]:
        if row["error"]:
            _note(console, "[bold red]failed:[/]",
                  f"plugin '{row['name']}' ({row['distribution']} {row['version']}): "
                  f"{row['error']} (--debug: traceback)")
            if row.get("traceback"):
                console.print(escape(row["traceback"]), highlight=False, soft_wrap=True)
        elif row.get("note"):
            _note(console, "[yellow]warning:[/]", row["note"])
    for clash in report["clashes"]:
        _note(console, "[bold red]clash:[/]", clash["message"])
    for o in report["overrides"]:
        replaced = ", ".join(_provider(p) for p in o["replaced"])
        _note(console, "[yellow]override:[/]",
              f"{o['kind']} '{o['name']}' from {_provider(o['winner'])} replaces {replaced} "
              f"({o['reason']})")
    for plugin, error in report.get("command_errors", {}).items():
        _note(console, "[bold red]commands:[/]", f"plugin '{plugin}': {error}")
    for entry in report["unmatched"]:
        _note(console, "[yellow]warning:[/]",
              f"LOSSCRAFT_LOAD_PLUGINS entry '{entry}' matches no installed plugin")
    console.print("`losscraft plugins NAME`: a component's parameters", style="dim",
                  highlight=False)


def print_component(info: dict[str, Any], console: Console) -> None:
    """Print one component: kind, name, aliases, provider, its docstring's description and a
    table of its parameters (type, default or "required", the docstring's text)."""
    dist = " ".join(x for x in (info["distribution"], info["version"]) if x)
    aliases = f" (also: {', '.join(info['aliases'])})" if info["aliases"] else ""
    console.print(f"[bold]{escape(info['kind'].replace('_', ' '))} "
                  f"{escape(info['name'])}[/]{escape(aliases)} — plugin "
                  f"'{escape(info['plugin'])}'" + (f" ({escape(dist)})" if dist else ""),
                  highlight=False)
    if info["description"]:
        console.print(escape(info["description"]), highlight=False)
    if not info["parameters"]:
        console.print("no parameters", highlight=False)
        return
    table = _table("parameters", "name", "type", "default", "description")
    for p in info["parameters"]:
        default = "[bold]required[/]" if p["required"] else escape(p["default"])
        table.add_row(escape(p["name"]), escape(p["type"]), default, escape(p["help"]))
    console.print(table)
