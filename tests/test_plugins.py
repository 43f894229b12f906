"""Plugin discovery through the entry-point group, code-registered plugins, broken plugins."""

import json
import types
from importlib import metadata

import pytest
from click.testing import CliRunner

from losscraft import hookspecs
from losscraft.cli import main
from losscraft.errors import PluginError
from losscraft.hookspecs import hookimpl
from losscraft.plugins import KINDS, Registry, get_registry


def test_builtins_found_through_entry_points():
    registry = Registry()
    registry.load_entry_points()
    eps = {ep.name for ep in metadata.entry_points(group="losscraft")}
    assert eps <= set(registry.plugins)
    assert "nll" in registry.names("objective")
    assert "prosocial_dialog" in registry.names("data_source")
    assert {"hf", "smollm2_embedded", "tiny"} <= set(registry.names("model"))
    comp = registry.get("objective", "nll")
    assert comp.distribution == "losscraft" and comp.version
    assert not registry.failures, [f.error for f in registry.failures]


def test_plugin_registered_from_test_module(registry):
    assert registry.get("data_source", "toy_dialogs").plugin == "toy_plugin"


def test_broken_plugin_reported_rest_works(monkeypatch):
    real = metadata.entry_points

    class BrokenEP:
        name, group, dist = "broken", "losscraft", None

        def load(self):
            raise ImportError("no module named 'missing_dependency'")

    def fake(**kwargs):
        return list(real(**kwargs)) + [BrokenEP()]

    monkeypatch.setattr(metadata, "entry_points", fake)
    registry = Registry()
    registry.load_entry_points()
    assert "missing_dependency" in registry.plugins["broken"].error
    assert "nll" in registry.names("objective")


def test_hook_that_raises_is_reported():
    module = types.SimpleNamespace()

    @hookimpl
    def register_objectives(register):
        raise RuntimeError("boom")

    module.register_objectives = register_objectives
    registry = Registry()
    info = registry.add_plugin(module, "exploding")
    assert "boom" in info.error


def test_env_var_limits_plugins(monkeypatch):
    monkeypatch.setenv("LOSSCRAFT_LOAD_PLUGINS", "nll,tiny_model")
    registry = get_registry(reload=True)
    try:
        assert set(registry.plugins) == {"nll", "tiny_model"}
        with pytest.raises(PluginError, match="unknown data source"):
            registry.get("data_source", "prosocial_dialog")
    finally:
        monkeypatch.delenv("LOSSCRAFT_LOAD_PLUGINS")
        get_registry(reload=True)


def test_every_hook_documented():
    for kind, hook in KINDS.items():
        spec = getattr(hookspecs, hook)
        assert spec.__doc__ and "register" in spec.__doc__, hook


def test_every_builtin_factory_documented():
    registry = Registry()
    registry.load_entry_points()
    for kind in KINDS:
        for name in registry.names(kind):
            assert registry.get(kind, name).summary, f"{kind} {name} has no docstring"


def test_plugins_command_json_and_table():
    runner = CliRunner()
    result = runner.invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    nll = next(r for r in rows if r["name"] == "nll")
    assert nll["distribution"] == "losscraft"
    assert {"kind": "objective", "name": "nll"}.items() <= nll["components"][0].items()
    result = runner.invoke(main, ["plugins"])
    assert result.exit_code == 0 and "nll" in result.output
