"""``losscraft install PKG…``: install plugin packages into the environment losscraft runs in
(``sys.executable -m pip install``, like ``llm install``), then list what they provide."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from losscraft.app.friendly_errors import friendly_errors
from losscraft.errors import LosscraftError

#: pip options that would install somewhere losscraft does not look for plugins
_ELSEWHERE = ("--target", "-t", "--prefix", "--root")


class InstallError(LosscraftError):
    """pip failed, or was asked to install outside losscraft's environment."""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip_install(args: tuple[str, ...]) -> set[str]:
    """Run ``pip install ARGS`` with this interpreter; the canonical names of the distributions
    it installed (pip's ``--report``), so reinstalling a version counts too."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        done = subprocess.run([sys.executable, "-m", "pip", "install", "--report", str(report),
                               *args])
        if done.returncode != 0:
            raise InstallError(f"pip install failed (exit {done.returncode}); its output is "
                               "above")
        installed = json.loads(report.read_text()) if report.is_file() else {}
    return {_canonical(item["metadata"]["name"]) for item in installed.get("install", [])}


def _report() -> dict:
    """`losscraft plugins --json` of a fresh interpreter: it sees what pip just installed
    (editable finders, new entry points) as the next ``losscraft`` command will."""
    code = "from losscraft.app.main import main; main(['plugins', '--json'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise InstallError("installed, but `losscraft plugins` then failed: "
                           + (done.stderr.strip().splitlines() or ["no output"])[-1])
    return json.loads(done.stdout)


def _describe(row: dict) -> str:
    who = f"{row['distribution']} {row['version']}".strip() or row["name"]
    if row["error"]:
        return f"{who}: plugin '{row['name']}' failed: {row['error']}"
    if row.get("note"):
        return f"{who}: {row['note']}"
    provides = ", ".join(f"{c['kind'].replace('_', ' ')} {c['name']}"
                         for c in row["components"]) or "commands only"
    return f"{who}: plugin '{row['name']}' provides {provides}"


@click.command("install", context_settings={"ignore_unknown_options": True,
                                            "allow_interspersed_args": False})
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@friendly_errors
def install_command(args: tuple[str, ...]) -> None:
    """Install plugin packages into the environment losscraft runs in, then list the
    components they provide. ARGS go to `pip install` as they are (packages, wheel files,
    `-e PATH`, `--upgrade`, `--no-index`, `--find-links DIR`, ...).

    \b
    losscraft install losscraft-focal
    losscraft install -e ./my-losses
    losscraft install --no-index dist/my_losses-0.1.0-py3-none-any.whl
    """
    for arg in args:
        option = arg.split("=")[0]
        if option in _ELSEWHERE or (arg.startswith("-t") and not arg.startswith("--")):
            raise InstallError(f"install: '{arg}' would put plugins where losscraft does not "
                               f"look; they go into its own environment ({sys.prefix})")
    click.echo(f"pip install {' '.join(args)}  (into {sys.prefix})", err=True)
    installed = _pip_install(args) | {_canonical(a) for a in args if not a.startswith("-")}
    report = _report()
    rows = [r for r in report["plugins"] if _canonical(r["distribution"]) in installed]
    if not rows:
        click.echo("installed, but it provides no losscraft plugin: no entry point in the "
                   "'losscraft' group (see docs/plugins.md)")
        return
    for row in rows:
        click.echo(_describe(row))
