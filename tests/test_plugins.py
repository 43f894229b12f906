"""Plugin discovery through the entry-point group, code-registered plugins, broken plugins."""

import json
import types
from importlib import metadata

import pytest
from click.testing import CliRunner

from losscraft.plugins import hookspecs
from losscraft.app.main import main
from losscraft.errors import PluginError
from losscraft.plugins.hookspecs import hookimpl
from losscraft.plugins.registry import KINDS, Registry, get_registry
from losscraft.testing.builders import recipe_toml


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
    monkeypatch.setenv("LOSSCRAFT_LOAD_PLUGINS", "nll,tiny")
    registry = get_registry(reload=True)
    try:
        assert set(registry.plugins) == {"nll", "tiny"}
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
    rows = json.loads(result.output)["plugins"]
    nll = next(r for r in rows if r["name"] == "nll")
    assert nll["distribution"] == "losscraft"
    assert {"kind": "objective", "name": "nll"}.items() <= nll["components"][0].items()
    result = runner.invoke(main, ["plugins"])
    assert result.exit_code == 0 and "nll" in result.output


# ------------------------------------------------------------------ clash policy, loud failures
class FakeDist:
    def __init__(self, name, version="0.1.0"):
        self.name, self.version = name, version


class FakeEP:
    """An entry point of the ``losscraft`` group whose ``load`` returns ``target`` (or raises)."""

    group = "losscraft"

    def __init__(self, name, target, dist="", version="0.1.0"):
        self.name, self._target = name, target
        self.dist = FakeDist(dist, version) if dist else None

    def load(self):
        if isinstance(self._target, BaseException):
            raise self._target
        return self._target


def objective_plugin(name, factory=None, **register_kwargs):
    """A plugin object registering one objective ``name``."""
    module = types.SimpleNamespace()

    def default_factory(scale: float = 1.0):
        """A test objective."""

    @hookimpl
    def register_objectives(register):
        register(name, factory or default_factory, **register_kwargs)

    module.register_objectives = register_objectives
    return module


def with_entry_points(monkeypatch, *extra):
    real = metadata.entry_points

    def fake(**kwargs):
        return list(real(**kwargs)) + list(extra)

    monkeypatch.setattr(metadata, "entry_points", fake)


def test_clash_between_distributions_names_both_and_neither_wins(monkeypatch):
    with_entry_points(monkeypatch, FakeEP("aaa_losses", objective_plugin("focal"), "aaa-losses"),
                      FakeEP("zzz_losses", objective_plugin("focal"), "zzz-losses", "2.0"))
    registry = Registry()
    registry.load_entry_points()
    with pytest.raises(PluginError) as err:
        registry.get("objective", "focal")
    message = str(err.value)
    assert "aaa-losses 0.1.0" in message and "zzz-losses 2.0" in message
    assert "objective 'focal'" in message and "neither is used" in message
    assert "focal" not in registry.names("objective")
    assert not registry.failures   # both plugins loaded; only the clashing name is unusable


def test_third_party_cannot_silently_replace_a_builtin(monkeypatch):
    # the name sorts before every built-in entry point: order must not matter
    with_entry_points(monkeypatch, FakeEP("aaa", objective_plugin("nll"), "aaa-nll"))
    registry = Registry()
    registry.load_entry_points()
    with pytest.raises(PluginError, match="plugin 'aaa' \\(aaa-nll 0.1.0\\) and plugin 'nll' "
                                          "\\(losscraft"):
        registry.get("objective", "nll")
    assert not registry.failures


def test_replacing_a_builtin_needs_opt_in_and_is_reported(monkeypatch):
    plugin = objective_plugin("nll", replaces=True)
    with_entry_points(monkeypatch, FakeEP("my_nll", plugin, "my-nll"))
    registry = Registry()
    registry.load_entry_points()
    comp = registry.get("objective", "nll")
    assert comp.plugin == "my_nll"
    (override,) = registry.overrides
    assert override.winner is comp and override.replaced[0].distribution == "losscraft"
    import losscraft.plugins.registry as plugins_module

    monkeypatch.setattr(plugins_module, "_REGISTRY", None)
    try:
        result = CliRunner().invoke(main, ["plugins"])
        assert result.exit_code == 0, result.output
        assert "override:" in result.output and "my_nll (my-nll 0.1.0)" in result.output
        assert "replaces=True" in result.output
    finally:
        monkeypatch.setattr(plugins_module, "_REGISTRY", None)


def test_override_env_var_chooses_between_clashing_plugins(monkeypatch):
    with_entry_points(monkeypatch, FakeEP("aaa_losses", objective_plugin("focal"), "aaa-losses"),
                      FakeEP("zzz_losses", objective_plugin("focal"), "zzz-losses"))
    monkeypatch.setenv("LOSSCRAFT_OVERRIDE", "zzz-losses")
    registry = Registry()
    registry.load_entry_points()
    assert registry.get("objective", "focal").plugin == "zzz_losses"
    assert "LOSSCRAFT_OVERRIDE" in registry.overrides[0].reason


def test_replaces_cannot_override_another_third_party(monkeypatch):
    with_entry_points(monkeypatch, FakeEP("aaa_losses", objective_plugin("focal"), "aaa-losses"),
                      FakeEP("zzz_losses", objective_plugin("focal", replaces=True), "zzz-losses"))
    registry = Registry()
    registry.load_entry_points()
    with pytest.raises(PluginError, match="neither is used"):
        registry.get("objective", "focal")


def test_failing_plugin_registers_nothing():
    module = types.SimpleNamespace()

    @hookimpl
    def register_objectives(register):
        register("half_registered", lambda: None)
        raise RuntimeError("boom after the first register")

    @hookimpl
    def register_scorers(register):
        register("never_seen", lambda: None)

    module.register_objectives = register_objectives
    module.register_scorers = register_scorers
    registry = Registry()
    info = registry.add_plugin(module, "half")
    assert "boom" in info.error and info.components == []
    assert "half_registered" not in registry.names("objective")
    assert "never_seen" not in registry.names("scorer")
    assert "RuntimeError: boom" in info.traceback


def test_plugin_registering_a_name_twice_fails_whole():
    module = types.SimpleNamespace()

    @hookimpl
    def register_objectives(register):
        register("twice", lambda: None)
        register("twice", lambda: None)

    module.register_objectives = register_objectives
    registry = Registry()
    info = registry.add_plugin(module, "twice_plugin")
    assert "registered twice" in info.error and "twice" not in registry.names("objective")


def test_recipe_naming_component_of_failed_plugin_says_so(monkeypatch, tmp_path):
    with_entry_points(monkeypatch, FakeEP("my_losses", RuntimeError("CUDA kernels missing"),
                                          "my-losses"))
    registry = Registry()
    registry.load_entry_points()
    with pytest.raises(PluginError) as err:
        registry.get("objective", "focal")
    message = str(err.value)
    assert ("plugin 'my_losses' (my-losses 0.1.0) failed to load: RuntimeError: CUDA kernels "
            "missing") in message
    assert "losscraft plugins" in message
    assert isinstance(err.value.__cause__, RuntimeError)   # what --debug shows


def test_validate_command_reports_failed_plugin_and_debug_shows_traceback(monkeypatch, tmp_path):
    import losscraft.plugins.registry as plugins_module

    def boom():
        raise RuntimeError("CUDA kernels missing")

    class Loader(FakeEP):
        def load(self):
            boom()

    with_entry_points(monkeypatch, Loader("my_losses", None, "my-losses"))
    monkeypatch.setattr(plugins_module, "_REGISTRY", None)
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_toml(report=None, stages=[{
        "name": "main", "max_steps": 1, "data": [{"plugin": "prosocial_dialog"}],
        "terms": [{"plugin": "focal"}]}]))
    try:
        result = CliRunner().invoke(main, ["validate", str(recipe)])
        assert result.exit_code == 1
        assert "plugin 'my_losses' (my-losses 0.1.0) failed to load" in result.output
        assert "stages.main.terms.focal.plugin" in result.output or "terms" in result.output
        result = CliRunner().invoke(main, ["--debug", "validate", str(recipe)])
        assert result.exception is not None
        import traceback as tb
        text = "".join(tb.format_exception(result.exception))
        assert "in boom" in text and "CUDA kernels missing" in text
    finally:
        monkeypatch.setattr(plugins_module, "_REGISTRY", None)


def test_plugins_command_shows_failure_and_clash(monkeypatch):
    import losscraft.plugins.registry as plugins_module

    with_entry_points(monkeypatch, FakeEP("my_losses", RuntimeError("broken import"), "my-losses"),
                      FakeEP("aaa", objective_plugin("nll"), "aaa-nll"))
    monkeypatch.setattr(plugins_module, "_REGISTRY", None)
    try:
        result = CliRunner().invoke(main, ["plugins", "--json"])
        data = json.loads(result.output)
        assert result.exit_code == 0, result.output
        failed = next(p for p in data["plugins"] if p["name"] == "my_losses")
        assert "broken import" in failed["error"]
        (clash,) = [c for c in data["clashes"] if c["name"] == "nll"]
        assert {p["distribution"] for p in clash["providers"]} == {"aaa-nll", "losscraft"}
        table = CliRunner().invoke(main, ["plugins"])
        assert "clash" in table.output and "broken import" in table.output
    finally:
        monkeypatch.setattr(plugins_module, "_REGISTRY", None)


def test_load_plugins_entries_matching_nothing_are_reported(caplog):
    registry = Registry()
    registry.load_entry_points({"nll", "nlll", "retrieval"})
    assert registry.unmatched == ["nlll", "retrieval"]
    assert "matches no installed plugin" in caplog.text
    with pytest.raises(PluginError, match="matching no installed plugin: nlll, retrieval"):
        registry.get("rot_generator", "retrieval")


# ------------------------------------------------------------------ aliases, reserved keys
def test_renamed_components_keep_old_names_as_aliases():
    registry = Registry()
    registry.load_entry_points()
    assert registry.get("reranker", "prosocial").name == "prosocial_reranker"
    assert registry.get("rot_generator", "retrieval").name == "rot_retrieval"
    assert registry.get("rot_generator", "model").name == "rot_model"


def test_builtin_entry_point_module_and_component_names_agree():
    registry = Registry()
    registry.load_entry_points()
    for ep in metadata.entry_points(group="losscraft"):
        if ep.dist is None or ep.dist.name != "losscraft":
            continue
        assert ep.value.rsplit(".", 1)[-1] == ep.name, ep
        names = [c.name for c in registry.plugins[ep.name].components]
        assert names == [ep.name], (ep.name, names)


@pytest.mark.parametrize("kind,key", [("data_source", "limit"), ("objective", "weight"),
                                      ("objective", "name"), ("objective", "penalty")])
def test_reserved_key_collision_reported_at_registration(kind, key):
    from losscraft.plugins.registry import KINDS as kinds

    namespace = {}
    exec(f"def factory({key}: int = 0):\n    'doc'\n", namespace)
    module = types.SimpleNamespace()
    hook = kinds[kind]

    def register_hook(register):
        register("colliding", namespace["factory"])

    setattr(module, hook, hookimpl(specname=hook)(register_hook))
    registry = Registry()
    info = registry.add_plugin(module, "colliding_plugin")
    assert f"parameter '{key}' is a reserved recipe key" in info.error
    assert "colliding" not in registry.names(kind)


def test_reserved_keys_match_the_recipe_parser():
    from losscraft.plugins.signatures import RESERVED_KEYS
    from losscraft.recipe.parse import COMPONENT_CORE_KEYS
    from losscraft.recipe.schema import DataSpec, TermSpec

    assert set(COMPONENT_CORE_KEYS[DataSpec]) == set(RESERVED_KEYS["data_source"])
    assert set(COMPONENT_CORE_KEYS[TermSpec]) == set(RESERVED_KEYS["objective"])


def test_no_builtin_plugin_failed_or_collides():
    registry = Registry()
    registry.load_entry_points()
    assert not registry.failures, [f.error for f in registry.failures]
    assert not any(registry.clashes.values())


# ------------------------------------------------------------------ register_commands
def _group():
    import click

    @click.group()
    def cli():
        """test group"""

    return cli


def test_builtin_commands_register_through_the_hook():
    from losscraft.app.command_hooks import register_commands

    cli = _group()
    register_commands(cli, Registry())
    assert {"run-all", "eval", "compare", "generate", "score", "judge", "bench",
            "new-plugin"} <= set(cli.commands)
    assert {"eval", "run-all", "new-plugin"} <= set(main.commands)


def test_plugin_adds_a_command_but_cannot_replace_one():
    import click

    from losscraft.app.command_hooks import register_commands

    class Adds:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("hello")
            def hello():
                """Say hello."""
                click.echo("hello from a plugin")

    class Hijacks:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("eval")
            def evil():
                """Not the real eval."""

    class Breaks:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("half")
            def half():
                """Added before the failure."""
            raise RuntimeError("command hook broke")

    registry = Registry()
    for name, plugin in (("adds", Adds()), ("hijacks", Hijacks()), ("breaks", Breaks())):
        registry.add_plugin(plugin, name)
    cli = _group()
    register_commands(cli, registry)
    assert CliRunner().invoke(cli, ["hello"]).output.strip() == "hello from a plugin"
    from losscraft.app.commands.eval import eval_command

    assert cli.commands["eval"] is eval_command
    assert "already provided by losscraft" in registry.command_errors["hijacks"]
    assert "command hook broke" in registry.command_errors["breaks"]
    assert "half" not in cli.commands
    assert registry.report()["command_errors"]["hijacks"]


def test_same_entry_point_name_in_two_distributions_is_a_clash_not_a_crash(monkeypatch):
    with_entry_points(monkeypatch, FakeEP("nll", objective_plugin("nll"), "evil-nll"))
    registry = Registry()
    registry.load_entry_points()
    assert "nll@evil-nll" in registry.plugins
    with pytest.raises(PluginError, match="evil-nll 0.1.0.*losscraft|losscraft.*evil-nll 0.1.0"):
        registry.get("objective", "nll")


# ------------------------------------------------------------------ silent no-op plugins
def _module(name, **functions):
    module = types.ModuleType(name)
    for attr, fn in functions.items():
        setattr(module, attr, fn)
    return module


def test_misspelt_hook_is_an_error_naming_module_and_closest_hook(monkeypatch):
    @hookimpl
    def register_objective(register):
        register("token_focal", lambda: None)

    module = _module("my_focal", register_objective=register_objective)
    with_entry_points(monkeypatch, FakeEP("my_focal", module, "my-focal"))
    registry = Registry()
    registry.load_entry_points()
    error = registry.plugins["my_focal"].error
    assert "module my_focal" in error and "unknown hook 'register_objective'" in error
    assert "did you mean 'register_objectives'?" in error
    with pytest.raises(PluginError, match="unknown hook 'register_objective'"):
        registry.get("objective", "token_focal")
    assert not registry.failures[1:]          # the rest loaded


def test_plugin_registering_nothing_is_reported_everywhere(monkeypatch, tmp_path):
    def register_objectives(register):        # @hookimpl forgotten
        register("token_focal", lambda: None)

    module = _module("my_focal", register_objectives=register_objectives)
    with_entry_points(monkeypatch, FakeEP("my_focal", module, "my-focal"))
    registry = get_registry(reload=True)
    try:
        note = registry.plugins["my_focal"].note
        assert note.startswith("plugin 'my_focal' (my-focal 0.1.0) loaded but registered "
                               "nothing: is `@hookimpl` missing?")
        assert "register_objectives in module my_focal is not marked" in note
        with pytest.raises(PluginError) as err:
            registry.get("objective", "token_focal")
        assert "loaded but registered nothing: is `@hookimpl` missing?" in str(err.value)
        runner = CliRunner()
        listing = runner.invoke(main, ["plugins"], terminal_width=100)
        assert listing.exit_code == 0, listing.output
        assert "nothing (see below)" in listing.output
        assert "loaded but registered nothing" in " ".join(listing.output.split())
        rows = json.loads(runner.invoke(main, ["plugins", "--json"]).output)["plugins"]
        assert next(r for r in rows if r["name"] == "my_focal")["note"] == note
        from losscraft.testing.builders import write_recipe

        recipe = write_recipe(tmp_path, terms=[{"plugin": "token_focal"}])
        result = runner.invoke(main, ["validate", str(recipe)])
        assert result.exit_code == 1
        assert "registered nothing: is `@hookimpl` missing?" in " ".join(result.output.split())
    finally:
        get_registry(reload=True)


def test_hooks_that_register_nothing_and_command_only_plugins():
    @hookimpl
    def register_objectives(register):
        pass

    registry = Registry()
    quiet = registry.add_plugin(_module("quiet", register_objectives=register_objectives),
                                "quiet")
    assert "its hooks never call `register`" in quiet.note
    empty = registry.add_plugin(_module("empty"), "empty")
    assert empty.note.endswith("is `@hookimpl` missing?")

    class Commands:
        @hookimpl
        def register_commands(self, cli):
            pass

    assert registry.add_plugin(Commands(), "commands").note is None


def test_builtin_plugins_provide_no_commands():
    """The command line finds plugin commands without importing losscraft's own plugins
    (`get_registry(builtin=False)`), which holds only while they provide none."""
    registry = Registry()
    registry.load_entry_points(builtin=True)
    impls = registry.pm.hook.register_commands.get_hookimpls()
    assert not [i.plugin_name for i in impls]
    assert all(p.distribution == "losscraft" for p in registry.plugins.values())


def test_registry_loads_third_party_first_then_builtins(monkeypatch):
    with_entry_points(monkeypatch, FakeEP("extra", objective_plugin("extra_loss"), "extra-dist"))
    import losscraft.plugins.registry as registry_module

    monkeypatch.setattr(registry_module, "_REGISTRY", None)
    partial = registry_module.get_registry(builtin=False)
    assert set(partial.plugins) == {"extra"}
    full = registry_module.get_registry()
    assert full is partial and {"extra", "nll"} <= set(full.plugins)
    assert full.get("objective", "extra_loss").distribution == "extra-dist"
    monkeypatch.setattr(registry_module, "_REGISTRY", None)


# ------------------------------------------------------------------ reading the registry
@pytest.mark.parametrize("width", [40, 60, 80, 132])
def test_plugins_listing_fits_the_terminal_width(width, monkeypatch):
    long = "a_component_name_much_longer_than_any_column_would_be_allowed"
    with_entry_points(monkeypatch, FakeEP("long_plugin", objective_plugin(long), "long-dist"))
    registry = get_registry(reload=True)
    try:
        result = CliRunner().invoke(main, ["plugins"], terminal_width=width,
                                    env={"COLUMNS": str(width)})
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert max(len(line) for line in lines) <= width, "\n".join(lines)
        flat = "".join(line.strip() for line in lines)
        assert long in flat.replace(" ", "")      # wrapped, never cut
        full = json.loads(CliRunner().invoke(main, ["plugins", "--json"]).output)
        assert long in [c["name"] for r in full["plugins"] for c in r["components"]]
    finally:
        del registry
        get_registry(reload=True)


def test_plugins_name_prints_parameters_types_defaults_and_docs():
    runner = CliRunner()
    result = runner.invoke(main, ["plugins", "safety_loss"], terminal_width=120,
                           env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "objective safety_loss" in text and "Pull the policy towards the clean expert" in text
    assert "beta float 2.0 weight of ``JS(policy, toxic)``" in text
    assert "chunk_size int | None None" in text
    info = json.loads(runner.invoke(main, ["plugins", "hf", "--json"]).output)
    path = next(p for p in info["parameters"] if p["name"] == "path")
    assert path["required"] and path["type"] == "str" and "hub id" in path["help"]
    local = json.loads(runner.invoke(main, ["plugins", "data_source:local_files",
                                            "--json"]).output)
    rots = next(p for p in local["parameters"] if p["name"] == "rots_field")
    assert rots["default"] == "'rots'" and "optional columns" in rots["help"]
    unknown = runner.invoke(main, ["plugins", "safety_los"])
    assert unknown.exit_code == 1 and "did you mean 'safety_loss'?" in unknown.output
    assert "Traceback" not in unknown.output
