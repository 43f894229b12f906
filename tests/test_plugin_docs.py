"""The hook reference (docs/plugins.md) covers every hook, protocol method, reserved key and
`register` option — it fails when one is added without being documented (as datasette checks its
plugin hooks against its docs) — and every example in it and in the README's "Writing a plugin"
section runs: Python blocks register their components (objectives pass `check_objective`, so a
mis-declared metric in an example fails), TOML blocks parse, commands name real options."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from losscraft.plugins import protocols as components

from losscraft.plugins import hookspecs
from losscraft.core.loss import Loss
from losscraft.plugins.signatures import RESERVED_KEYS

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
_README = (ROOT / "README.md").read_text(encoding="utf-8")
README_SECTION = _README[_README.index("## Writing a plugin\n"):]
README_SECTION = README_SECTION[:README_SECTION.index("\n## ", 1)]
HOOKS = sorted(name for name, fn in vars(hookspecs).items()
               if callable(fn) and hasattr(fn, "losscraft_spec"))
PROTOCOLS = [Loss, components.DataSource, components.ModelProvider, components.Scorer,
             components.Reranker, components.RotGenerator]


def test_hookspecs_are_found():
    assert {"register_objectives", "register_commands"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_section_with_an_example(hook):
    match = re.search(rf"^### `{hook}`\n(.*?)(?=^##)", DOC, re.S | re.M)
    assert match, f"docs/plugins.md has no '### `{hook}`' section"
    section = match.group(1)
    assert "Arguments:" in section and f"def {hook}(" in section, f"{hook}: no example"


def _protocol_methods(protocol) -> list[str]:
    own = [n for n, v in vars(protocol).items() if callable(v) and
           (not n.startswith("_") or n == "__call__" or n == "__iter__")]
    return [n for n in own if n not in ("_is_protocol", "__init__", "__subclasshook__")]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_every_protocol_and_method_is_documented(protocol):
    assert protocol.__name__ in DOC
    methods = _protocol_methods(protocol)
    assert methods, protocol
    for method in methods:
        params = [p for p in inspect.signature(getattr(protocol, method)).parameters
                  if p != "self"]
        assert f"{method}(" in DOC, f"{protocol.__name__}.{method} missing from docs/plugins.md"
        for param in params:
            assert re.search(rf"{method}\([^)]*\b{param}\b", DOC), \
                f"{protocol.__name__}.{method}: parameter '{param}' not documented"


def test_reserved_keys_and_register_options_documented():
    for kind, keys in RESERVED_KEYS.items():
        for key in keys:
            assert f"`{key}`" in DOC, (kind, key)
    for option in ("aliases", "replaces"):
        assert f"`{option}`" in DOC
    for name in ("LOSSCRAFT_OVERRIDE", "LOSSCRAFT_LOAD_PLUGINS", "RecipeError", "requires",
                 "experts", "finish_metrics", "summed", "pyproject.toml"):
        assert name in DOC, name


def test_no_docstring_points_at_a_module_that_does_not_exist():
    root = Path(__file__).parent.parent
    pattern = re.compile(r"`(losscraft(?:\.[a-z_]+)+)")
    import importlib

    missing = []
    for path in [*(root / "losscraft").rglob("*.py"), root / "docs" / "plugins.md"]:
        for dotted in set(pattern.findall(path.read_text(encoding="utf-8"))):
            parts = dotted.split(".")
            for cut in range(len(parts), 0, -1):  # the longest importable prefix
                try:
                    module = importlib.import_module(".".join(parts[:cut]))
                except ImportError:
                    continue
                obj = module
                for attr in parts[cut:]:
                    obj = getattr(obj, attr, None)
                if obj is None:
                    missing.append(f"{path.relative_to(root)}: {dotted}")
                break
            else:
                missing.append(f"{path.relative_to(root)}: {dotted}")
    assert not missing, missing


def _run_blocks(text: str, where: str):
    """Execute every python block of ``text``; yields (index, hooks) for blocks defining a
    component hook."""
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
        namespace: dict = {}
        exec(compile(block, f"{where}[python block {i}]", "exec"), namespace)  # noqa: S102
        hooks = {k: v for k, v in namespace.items() if k.startswith("register_")}
        if hooks and "register_commands" not in hooks:
            yield i, hooks


@pytest.mark.parametrize("where", ["docs/plugins.md", "README.md"])
def test_every_python_example_runs_and_registers(where):
    import types as pytypes

    from losscraft.plugins.registry import Registry
    from losscraft.testing import check_objective

    text = DOC if where == "docs/plugins.md" else README_SECTION
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= (7 if where == "docs/plugins.md" else 1)
    registered = 0
    for i, hooks in _run_blocks(text, where):
        registry = Registry()
        registry.load_entry_points({"tiny"})
        info = registry.add_plugin(pytypes.SimpleNamespace(**hooks), f"doc_example_{i}")
        assert info.error is None and info.components, (where, i, info.error, info.note)
        for component in info.components:
            if component.kind == "objective":     # value, gradient, accumulation, metrics
                check_objective(component.name, registry=registry, penalty=False,
                                resume=False)
        registered += 1
    assert registered >= (6 if where == "docs/plugins.md" else 1)


@pytest.mark.parametrize("where", ["docs/plugins.md", "README.md"])
def test_every_toml_example_parses(where):
    import tomllib

    text = DOC if where == "docs/plugins.md" else README_SECTION
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks
    for block in blocks:
        tomllib.loads(block)


@pytest.mark.parametrize("where", ["docs/plugins.md", "README.md"])
def test_every_losscraft_command_in_the_examples_exists(where):
    """Each ``losscraft ...`` line of a bash block (and each inline `losscraft CMD --opt`) names
    a real command and real options of it."""
    import shlex

    from losscraft.app.main import main

    text = DOC if where == "docs/plugins.md" else README_SECTION
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.splitlines()]
    lines += re.findall(r"`(losscraft [a-z][^`]*)`", text)
    checked = 0
    for line in lines:
        for part in line.split("&&"):
            words = shlex.split(part.split("#")[0])
            if len(words) < 2 or words[0] != "losscraft":
                continue
            command = main.commands.get(words[1])
            assert command is not None, f"{where}: unknown command in {part!r}"
            options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            for word in words[2:]:
                if word.startswith("--") and command.name != "install":
                    assert word.split("=")[0] in options, f"{where}: {word} in {part!r}"
            checked += 1
    assert checked >= 2, where
