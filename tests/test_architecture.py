"""The house's layering, read from the code's own imports (every ``import`` statement, also those
inside functions): the library never imports the application wing (`losscraft.app`), each library
layer imports only its own layer or those below it, ``core`` nothing above ``functional``, and no
two modules import each other in a loop. docs/architecture.md draws the same layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "losscraft"

#: bottom-up; a module may import its own layer and the layers below it
LAYERS = (
    ("types", "errors", "lazy"),
    ("functional",),
    ("core",),
    ("runtime", "plugins"),
    ("recipe",),
    ("data", "models", "distributed"),
    ("generation",),
    ("trainer", "judge", "evaluation", "bench", "testing"),
    ("app",),
)
#: the package root re-exports the public API of core and the plugin system; ``python -m
#: losscraft`` is the command line, part of the application wing
ROOT_MODULES = {"losscraft": 3, "losscraft.__main__": len(LAYERS) - 1}
APP = ("losscraft.app", "losscraft.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, source: str | None = None) -> set[str]:
    """The losscraft modules ``name`` imports (a ``from package import name`` that names a module
    counts as that module), read from ``source`` (default: its file)."""
    path = MODULES.get(name)
    package = name if path is not None and path.name == "__init__.py" else name.rpartition(".")[0]
    source = path.read_text(encoding="utf-8") if source is None else source
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in MODULES else base)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int:
    if name in ROOT_MODULES:
        return ROOT_MODULES[name]
    top = name.split(".")[1]
    for level, packages in enumerate(LAYERS):
        if top in packages:
            return level
    raise AssertionError(f"{name}: its package '{top}' is in no layer of LAYERS")


def test_the_graph_sees_every_kind_of_import():
    source = ("import losscraft.trainer.loop\nfrom losscraft import distributed, errors\n"
              "def f():\n    from losscraft.distributed import sharding\n"
              "    from ..recipe import schema\n    from . import step\n"
              "if True:\n    from losscraft.app.main import main\n")
    assert _imports("losscraft.core.not_a_module", source) == {
        "losscraft.trainer.loop", "losscraft.distributed", "losscraft.errors",
        "losscraft.distributed.sharding", "losscraft.recipe.schema", "losscraft.core.step",
        "losscraft.app.main"}


def test_every_module_has_a_layer():
    for name in MODULES:
        _layer(name)


def test_library_never_imports_the_application():
    upward = [f"{m} -> {t}" for m, targets in GRAPH.items() for t in targets
              if not m.startswith(APP) and t.startswith(APP)]
    assert not upward, "library modules import the application wing:\n" + "\n".join(upward)


def test_core_imports_nothing_above_functional():
    allowed = ("losscraft.core", "losscraft.functional", "losscraft.errors", "losscraft.types")
    bad = [f"{m} -> {t}" for m, targets in GRAPH.items() if m.startswith("losscraft.core")
           for t in targets if not t.startswith(allowed)]
    assert not bad, "core imports above functional:\n" + "\n".join(bad)


def test_each_layer_imports_only_itself_and_below():
    upward = [f"{m} (layer {_layer(m)}) -> {t} (layer {_layer(t)})"
              for m, targets in GRAPH.items() for t in targets if _layer(t) > _layer(m)]
    assert not upward, "imports that run up the layers:\n" + "\n".join(sorted(upward))


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(GRAPH):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "modules that import each other in a loop:\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("limit", [400])
def test_library_modules_stay_small(limit):
    big = {name: len(MODULES[name].read_text(encoding="utf-8").splitlines())
           for name in MODULES if not name.startswith(APP)}
    assert not {n: lines for n, lines in big.items() if lines > limit}, \
        {n: lines for n, lines in big.items() if lines > limit}


def test_trainer_functions_stay_short():
    long = []
    for name, path in MODULES.items():
        if not name.startswith("losscraft.trainer"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long, long
