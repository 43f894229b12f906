"""Error handling shared by every ``losscraft`` command: project errors print as one clear
message naming what is wrong and where; ``--debug`` (or ``LOSSCRAFT_DEBUG=1``) shows tracebacks."""

from __future__ import annotations

import functools
import os
import sys

import click
from rich.console import Console
from rich.markup import escape

from losscraft.errors import LosscraftError

console = Console(stderr=True)


def _debug_enabled(ctx: click.Context | None) -> bool:
    root = ctx.find_root() if ctx else None
    return bool((root and root.params.get("debug")) or os.environ.get("LOSSCRAFT_DEBUG"))


def friendly_errors(fn):
    """Print project errors as one clear message (traceback only with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context(silent=True)
        try:
            return fn(*args, **kwargs)
        except LosscraftError as exc:
            if _debug_enabled(ctx):
                raise
            if getattr(exc, "reported_elsewhere", False):  # another process printed it
                sys.exit(1)
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)  # one line, however wide
            sys.exit(1)
        except KeyboardInterrupt:
            console.print("[bold red]interrupted[/]")
            sys.exit(130)
    return wrapper
