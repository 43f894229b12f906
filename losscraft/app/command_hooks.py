"""Adding commands to the ``losscraft`` group through the ``register_commands`` hook: the
built-ins (`losscraft.app.commands`) first, then every loaded plugin's. A plugin cannot
replace an existing command: its command is dropped and the clash recorded; a hook that raises
is recorded too. Both show in ``losscraft plugins``."""

from __future__ import annotations

import logging
import traceback

import click

from losscraft.plugins.registry import Registry

log = logging.getLogger(__name__)

BUILTIN = "losscraft_commands"


def register_commands(cli: click.Group, registry: Registry) -> None:
    """Call every ``register_commands`` implementation with ``cli`` (built-ins first)."""
    from losscraft.app import commands as builtin_commands

    if registry.pm.get_plugin(BUILTIN) is None:
        registry.pm.register(builtin_commands, name=BUILTIN)
    impls = registry.pm.hook.register_commands.get_hookimpls()
    impls.sort(key=lambda impl: impl.plugin_name != BUILTIN)  # stable: built-ins first
    owners: dict[str, str] = {name: "losscraft" for name in cli.commands}
    for impl in impls:
        before = dict(cli.commands)
        try:
            impl.function(cli=cli)
        except Exception as exc:  # a broken plugin must not break the command line
            for name in set(cli.commands) - set(before):
                del cli.commands[name]
            registry.command_errors[impl.plugin_name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin '%s' register_commands failed: %s\n%s", impl.plugin_name, exc,
                        traceback.format_exc())
            continue
        for name, command in list(cli.commands.items()):
            if name in before and before[name] is not command:
                cli.commands[name] = before[name]  # the first owner keeps its command
                registry.command_errors[impl.plugin_name] = (
                    f"command '{name}' is already provided by {owners[name]}; not replaced")
            elif name not in before:
                owners[name] = ("losscraft" if impl.plugin_name == BUILTIN
                                else f"plugin '{impl.plugin_name}'")
