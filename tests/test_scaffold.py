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
from losscraft.app.scaffold import (KINDS, ScaffoldError, add_component, module_name,
                                    new_plugin)

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
    package = module_name(folder.name)
    text = (folder / "pyproject.toml").read_text()
    assert f'{package} = "{package}.{package}"' in text    # component == entry point == module
    assert f'register("{package}"' in (folder / package / f"{package}.py").read_text()
    result = install_and_test(scratch_python, folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout or "2 passed" in result.stdout


def test_second_component_added_to_a_package_passes_its_tests(tmp_path, scratch_python):
    folder = new_plugin("focal-losses", "objective", tmp_path, component="token_focal")
    result = CliRunner().invoke(main, ["new-plugin", "--add-to", str(folder), "--kind", "data",
                                       "--component", "jsonl_dialogs"])
    assert result.exit_code == 0, result.output
    assert (folder / "focal_losses" / "jsonl_dialogs.py").is_file()
    assert (folder / "tests" / "test_jsonl_dialogs.py").is_file()
    import tomllib

    entry_points = tomllib.loads((folder / "pyproject.toml").read_text())["project"][
        "entry-points"]["losscraft"]
    assert entry_points == {"token_focal": "focal_losses.token_focal",
                            "jsonl_dialogs": "focal_losses.jsonl_dialogs"}
    result = install_and_test(scratch_python, folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout


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
    assert (tmp_path / "my-losses" / "my_losses" / "my_losses.py").is_file()
    again = CliRunner().invoke(main, ["new-plugin", "my-losses", "--dir", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in again.output
    for bad in ("9lives", "class", "losscraft", "--", "My Focal!", "focal-", "ünïcode", "a b"):
        with pytest.raises(ScaffoldError):
            module_name(bad)
    assert module_name("My.Focal-Loss") == "my_focal_loss"


@pytest.mark.parametrize("args, message", [
    (["My Focal!"], "not a valid package name"),
    (["focal", "--component", "my-focal"], "not a Python identifier"),
    (["focal", "--component", "class"], "not a Python identifier"),
    (["--add-to", "nowhere", "--component", "x"], "has no pyproject.toml"),
    (["--add-to", "nowhere"], "needs --component"),
])
def test_new_plugin_rejects_bad_names_in_one_line(tmp_path, args, message):
    result = CliRunner().invoke(main, ["new-plugin", *args, "--dir", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output
    assert not any(tmp_path.iterdir())          # nothing written


def test_add_to_refuses_an_existing_component_and_a_foreign_package(tmp_path):
    folder = new_plugin("focal-losses", "objective", tmp_path, component="token_focal")
    with pytest.raises(ScaffoldError, match="exists already"):
        add_component(folder, "objective", "token_focal")
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "pyproject.toml").write_text('[project]\nname = "other"\n')
    with pytest.raises(ScaffoldError, match="not a package written by"):
        add_component(foreign, "scorer", "words")


def test_install_line_is_shell_quoted(tmp_path):
    import shlex

    parent = tmp_path / "with space"
    result = CliRunner().invoke(main, ["new-plugin", "my-losses", "--dir", str(parent)])
    assert result.exit_code == 0, result.output
    line = result.output.splitlines()[-1]
    words = shlex.split(line.removeprefix("next: ").split("&&")[0])
    assert words == ["losscraft", "install", "-e", str(parent / "my-losses")]


def test_install_command_installs_a_local_wheel_offline_and_lists_it(tmp_path,
                                                                     scratch_python):
    """`losscraft install` run by a scratch environment's interpreter installs into that
    environment (pip of sys.executable), from a wheel built here, with no index."""
    folder = new_plugin("focal-losses", "objective", tmp_path, component="token_focal")
    add_component(folder, "data", "jsonl_dialogs")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("LOSSCRAFT_LOAD_PLUGINS", None)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(folder)],
                   check=True, capture_output=True, text=True, env=env)
    wheel = next((tmp_path / "dist").glob("focal_losses-0.1.0-*.whl"))
    cli = [str(scratch_python), "-c", "from losscraft.app.main import main; main()"]
    result = subprocess.run([*cli, "install", "--no-index", "--no-deps", str(wheel)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provides objective token_focal" in result.stdout, result.stdout
    assert "provides data source jsonl_dialogs" in result.stdout, result.stdout
    shown = subprocess.run([*cli, "plugins", "token_focal"], capture_output=True, text=True,
                           env=env)
    assert shown.returncode == 0 and "smoothing" in shown.stdout, shown.stdout + shown.stderr
    # this environment never saw it
    from importlib import metadata

    assert "token_focal" not in {ep.name for ep in metadata.entry_points(group="losscraft")}
    refused = subprocess.run([*cli, "install", "--target", str(tmp_path / "t"), str(wheel)],
                             capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "where losscraft does not look" in refused.stderr
