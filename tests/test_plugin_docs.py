"""The hook reference (docs/plugins.md) covers every hook, protocol method, reserved key and
`register` option — it fails when one is added without being documented (as datasette checks its
plugin hooks against its docs)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from losscraft.plugins import protocols as components

from losscraft.plugins import hookspecs
from losscraft.core.loss import Loss
from losscraft.plugins.signatures import RESERVED_KEYS

DOC = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
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


def test_every_python_example_runs_and_registers():
    import types as pytypes

    from losscraft.plugins.registry import Registry

    blocks = re.findall(r"```python\n(.*?)```", DOC, re.S)
    assert len(blocks) >= 7
    registered = 0
    for i, block in enumerate(blocks):
        namespace: dict = {}
        exec(compile(block, f"docs/plugins.md[python block {i}]", "exec"), namespace)  # noqa: S102
        hooks = {k: v for k, v in namespace.items() if k.startswith("register_")}
        if not hooks or "register_commands" in hooks:
            continue
        registry = Registry()
        info = registry.add_plugin(pytypes.SimpleNamespace(**hooks), f"doc_example_{i}")
        assert info.error is None and info.components, (i, info.error)
        registered += 1
    assert registered >= 6
