"""The scaffold writes packages whose own tests pass right after ``pip install -e``, and the
example plugin package in ``examples/`` installs and passes its tests — each in a scratch
environment layered over this one (``--no-deps --no-build-isolation``: offline-safe), so the
project's own environment never sees their entry points."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

from losscraft.app.main import main
from losscraft.app.scaffold import KINDS, ScaffoldError, module_name, new_plugin

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "losscraft-example-plugin"


@pytest.fixture(scope="module")
def scratch_python(tmp_path_factory):
    """A venv whose site-packages chains to this interpreter's (losscraft, torch, pytest)."""
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], check=True, capture_output=True, text=True)
    parent = sysconfig.get_paths()["purelib"]
    Path(site.stdout.strip(), "_losscraft_parent.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n")
    return python


def install_and_test(python: Path, package: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LOSSCRAFT_LOAD_PLUGINS", None)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-build-isolation", "-e", str(package)],
                   check=True, capture_output=True, text=True, env=env)
    return subprocess.run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=package, capture_output=True, text=True, env=env)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generated_package_passes_its_own_tests(kind, tmp_path, scratch_python):
    folder = new_plugin(f"my-{kind}-plugin", kind, tmp_path)
    module = module_name(folder.name)
    text = (folder / "pyproject.toml").read_text()
    assert f'{module} = "{module}"' in text        # entry point == module == component
    assert f'register("{module}"' in (folder / f"{module}.py").read_text()
    result = install_and_test(scratch_python, folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout or "2 passed" in result.stdout


def test_example_package_installs_and_passes_its_tests(tmp_path, scratch_python):
    package = tmp_path / EXAMPLE.name
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("*.egg-info",
                                                                     "__pycache__"))
    result = install_and_test(scratch_python, package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout, result.stdout


def test_new_plugin_command_and_bad_names(tmp_path):
    result = CliRunner().invoke(main, ["new-plugin", "my-losses", "--kind", "scorer",
                                       "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "my-losses" / "my_losses.py").is_file()
    again = CliRunner().invoke(main, ["new-plugin", "my-losses", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output
    for bad in ("9lives", "class", "losscraft", "--"):
        with pytest.raises(ScaffoldError):
            module_name(bad)
