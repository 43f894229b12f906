"""``losscraft new-plugin``: write a working plugin package, or add a component to one.

A package (distribution ``my-losses``, import package ``my_losses``) holds one module per
component, ``my_losses/<component>.py`` — a small but real implementation of its kind, written to
be edited (`losscraft.app.scaffold_templates`) — each registered through its own entry point of
the ``losscraft`` group, and one test per component running the kind's `losscraft.testing`
contract check. Its tests pass right after ``pip install -e .``. `add_component` adds a module,
an entry point and a test to a package written this way.
"""

from __future__ import annotations

import keyword
import re
import textwrap
import tomllib
from pathlib import Path

from losscraft.app import scaffold_templates as templates
from losscraft.errors import LosscraftError

#: --kind value -> (registry kind, hook name, contract check)
KINDS = {
    "objective": ("objective", "register_objectives", "check_objective"),
    "data": ("data_source", "register_data_sources", "check_data_source"),
    "scorer": ("scorer", "register_scorers", "check_scorer"),
    "reranker": ("reranker", "register_rerankers", "check_reranker"),
    "rot": ("rot_generator", "register_rot_generators", "check_rot_generator"),
    "model": ("model", "register_models", "check_model_provider"),
}

# PEP 508 names: ASCII letters and digits, with '.', '-', '_' inside
_DISTRIBUTION = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_TAKEN = ("losscraft", "losscraft_plugins", "test", "tests")


class ScaffoldError(LosscraftError):
    """The plugin cannot be written (bad name, folder exists, not a scaffolded package)."""


def canonical_name(name: str) -> str:
    """The canonical distribution name (PEP 503: lower case, runs of ``-_.`` -> ``-``) of
    ``name``; `ScaffoldError` unless ``name`` is a valid PEP 508 distribution name."""
    if not _DISTRIBUTION.match(name):
        raise ScaffoldError(f"'{name}' is not a valid package name: use ASCII letters, digits "
                            "and '-', '_', '.' inside (PEP 508), e.g. my-focal-loss")
    return re.sub(r"[-_.]+", "-", name).lower()


def module_name(name: str) -> str:
    """The import package of distribution ``name`` (``My.Losses`` -> ``my_losses``);
    `ScaffoldError` unless ``name`` is a valid package name giving a Python identifier."""
    module = canonical_name(name).replace("-", "_")
    if not module.isidentifier() or keyword.iskeyword(module):
        raise ScaffoldError(f"'{name}' does not make a Python package name ('{module}'); start "
                            "with a letter, e.g. my-losses")
    if module in _TAKEN:
        raise ScaffoldError(f"'{name}' would shadow an existing module; pick another name")
    return module


def check_component_name(component: str) -> str:
    """``component`` if it can name a component, its module and its entry point (a Python
    identifier, not a keyword, not starting with '_'); else `ScaffoldError`."""
    if not component.isidentifier() or keyword.iskeyword(component) \
            or component.startswith("_") or not component.isascii():
        raise ScaffoldError(f"component name '{component}' is not a Python identifier: use "
                            "letters, digits and '_', starting with a letter (e.g. token_focal)")
    if component in _TAKEN:
        raise ScaffoldError(f"component name '{component}' would shadow an existing module")
    return component


def _render(template: str, **values: str) -> str:
    return textwrap.dedent(template).lstrip("\n").format(**values)


def _values(name: str, package: str, component: str, kind: str) -> dict[str, str]:
    registry_kind = KINDS[kind][0]
    values = {"name": name, "package": package, "component": component, "kind": kind,
              "cls": "".join(part[:1].upper() + part[1:] for part in component.split("_")),
              "registry_kind": registry_kind.replace("_", " ")}
    values["usage"] = templates.USAGE[kind].format(**values)
    return values


def _component_files(values: dict[str, str]) -> dict[str, str]:
    kind, package, component = values["kind"], values["package"], values["component"]
    check = KINDS[kind][2]
    return {
        f"{package}/{component}.py": _render(templates.TEMPLATES[kind], **values),
        f"tests/test_{component}.py": (f'"""The losscraft contract for `{component}`."""\n\n'
                                       f"from losscraft.testing import {check}\n\n\n"
                                       + _render(templates.TEST_BODIES[kind], **values)),
    }


def _write(folder: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ScaffoldError(f"unknown kind '{kind}' (kinds: {', '.join(KINDS)})")


def new_plugin(name: str, kind: str, parent: str | Path = ".", *,
               component: str | None = None) -> Path:
    """Write the plugin package ``name`` (a PEP 508 name) with one component of ``kind`` (a key
    of `KINDS`) named ``component`` (default: the import package's name) into ``parent/name``
    and return that folder. `ScaffoldError` if a name is unusable or the folder exists."""
    _check_kind(kind)
    package = module_name(name)
    component = check_component_name(component or package)
    folder = Path(parent) / name
    if folder.exists():
        raise ScaffoldError(f"{folder} already exists; choose another name or add a component "
                            f"with --add-to {folder}")
    values = _values(name, package, component, kind)
    _write(folder, {
        "pyproject.toml": _render(templates.PYPROJECT, **values),
        "README.md": _render(templates.README, **values),
        f"{package}/__init__.py": _render(templates.PACKAGE_INIT),
        "tests/conftest.py": 'pytest_plugins = ["losscraft.testing.fixtures"]\n',
        **_component_files(values),
    })
    return folder


def add_component(folder: str | Path, kind: str, component: str) -> list[Path]:
    """Add component ``component`` of ``kind`` to the package in ``folder`` (written by
    `new_plugin`): its module, its entry point in ``pyproject.toml`` and its test. Returns the
    files written or changed. `ScaffoldError` when ``folder`` is not such a package or the
    component (module, entry point or test) exists already."""
    _check_kind(kind)
    check_component_name(component)
    folder = Path(folder)
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        raise ScaffoldError(f"{folder} has no pyproject.toml; create a package with "
                            "`losscraft new-plugin NAME` first")
    text = pyproject.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScaffoldError(f"{pyproject}: not valid TOML: {exc}") from None
    name = data.get("project", {}).get("name")
    packages = data.get("tool", {}).get("setuptools", {}).get("packages")
    entry_points = data.get("project", {}).get("entry-points", {}).get("losscraft")
    header = "[project.entry-points.losscraft]"
    if not name or not isinstance(packages, list) or len(packages) != 1 \
            or entry_points is None or header not in text:
        raise ScaffoldError(f"{pyproject}: not a package written by `losscraft new-plugin` (it "
                            f"needs [project] name, {header} and [tool.setuptools] packages = "
                            "[one package])")
    values = _values(name, packages[0], component, kind)
    files = _component_files(values)
    if component in entry_points:
        raise ScaffoldError(f"{pyproject}: entry point '{component}' exists already "
                            f"({entry_points[component]})")
    for relative in files:
        if (folder / relative).exists():
            raise ScaffoldError(f"{folder / relative} exists already; choose another component "
                                "name")
    # the new entry point goes right after the last line of the entry-point table
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == header) + 1
    while at < len(lines) and lines[at].strip() and not lines[at].lstrip().startswith("["):
        at += 1
    if not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    lines.insert(at, f'{component} = "{packages[0]}.{component}"\n')
    updated = "".join(lines)
    if component not in tomllib.loads(updated)["project"]["entry-points"]["losscraft"]:
        raise ScaffoldError(f"{pyproject}: could not add the entry point; add "
                            f'{component} = "{packages[0]}.{component}" under {header}')
    _write(folder, files)
    pyproject.write_text(updated, encoding="utf-8")
    return [folder / relative for relative in files] + [pyproject]
