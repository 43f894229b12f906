"""The ``losscraft`` command group. Every command, built-in or from a plugin, is added through the
``register_commands`` hook (`losscraft.app.commands` holds the built-ins).

Starting the command line imports no torch and no transformers: command modules import what
they need inside their functions, and only third-party plugins are loaded to find their
commands (losscraft's own plugins, which import torch, provide components only and load when a
command first asks the registry for one). ``tests/test_cli_startup.py`` keeps it that way.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(package_name="losscraft")
def main(debug: bool) -> None:
    """losscraft: composable training losses for safe dialog generation.

    \b
    Typical use:
      losscraft validate recipes/prosocial_dual_stage.toml
      losscraft run recipes/prosocial_dual_stage.toml
      losscraft run recipes/flatgd.toml --set stages.main.max_steps=2
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # our own progress bars say what is happening; the variable reaches transformers and the
    # hub when they are imported later, without importing them now
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:  # a plugin imported it already
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    from losscraft.runtime.malloc import keep_freed_memory

    keep_freed_memory()  # CPU steps reuse freed buffers (LOSSCRAFT_KEEP_FREED_MEMORY=0: off)
    if not debug:  # libraries' deprecation chatter is noise for users of the CLI
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def _register_commands() -> None:
    """Every command — built-in (`losscraft.app.commands`) or from a plugin — registers through
    the ``register_commands`` hook. Only third-party plugins are imported here."""
    from losscraft.app.command_hooks import register_commands
    from losscraft.plugins.registry import get_registry

    register_commands(main, get_registry(builtin=False))


_register_commands()
