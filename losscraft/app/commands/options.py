"""Command-line options shared by several commands: recipe overrides (``--set``) and plugin
parameters (``--scorer-param key=value``)."""

from __future__ import annotations

import json

import click

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE",
    help="Override a recipe field (TOML value), e.g. stages.adversarial.max_steps=2. Stages and "
         "terms are addressed by name; repeatable.")


def parse_params(pairs: tuple[str, ...], option: str) -> dict:
    """``key=value`` strings -> dict; values are read as JSON when they parse (numbers, booleans,
    lists), else kept as strings."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint=option)
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params
