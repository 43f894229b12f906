"""Where commands print: ``out`` (results, stdout) and ``console`` (progress and notes, stderr)."""

from rich.console import Console

console = Console(stderr=True)
out = Console()
