"""The plugin manager: discovers plugins through the ``losscraft`` entry-point group and collects
the components they register.

Built-in plugins register through the same entry points as third-party packages. The rules:

- **A plugin registers all of its components or none.** A plugin that fails to import, whose hook
  raises, that registers one name twice, or whose factory takes a parameter named like a key the
  recipe reserves (`losscraft.plugins.signatures.RESERVED_KEYS`) is recorded in
  `Registry.failures` with its error and traceback, and contributes nothing; everything else
  keeps working. A recipe that names a component nobody provides mentions the failed plugins
  (`Registry.get`).
- **Name clashes are errors, never silent wins.** When two plugins (of different distributions,
  or two plugins of one) provide the same component name, the name is unusable and `get` names
  both providers. A plugin may *replace a built-in* only by opting in: ``register(name, factory,
  replaces=True)`` in its hook, or ``LOSSCRAFT_OVERRIDE=plugin_or_distribution,...`` in the
  environment. Either way, ``losscraft plugins`` reports the override.
- ``LOSSCRAFT_LOAD_PLUGINS`` limits which plugins load: a comma-separated list of entry-point
  names or distribution names (empty string: none), like simonw/llm's ``LLM_LOAD_PLUGINS``.
  Entries that match no installed plugin are reported (`Registry.unmatched`).
- Renamed components keep their old names as ``aliases`` (``register(name, factory,
  aliases=("old",))``) where a recipe could already use the old one.

What it records (`Component`, `PluginInfo`, `Clash`, `Override`) is defined in
`losscraft.plugins.records`; the checks of a factory's signature in
`losscraft.plugins.signatures`.
"""

from __future__ import annotations

import logging
import os
import traceback
from importlib import metadata
from typing import Any, Callable

import pluggy

from losscraft.errors import PluginError, did_you_mean
from losscraft.plugins import hookspecs
from losscraft.plugins.hookcheck import check_hook_names, nothing_registered
from losscraft.plugins.records import (BUILTIN_DISTRIBUTION, LOAD_ENV_VAR, OVERRIDE_ENV_VAR,
                                       Clash, Component, Override, PluginInfo)
from losscraft.plugins.signatures import bind_params, check_reserved

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "losscraft"

#: component kind -> hook name
KINDS: dict[str, str] = {
    "objective": "register_objectives",
    "data_source": "register_data_sources",
    "model": "register_models",
    "scorer": "register_scorers",
    "reranker": "register_rerankers",
    "rot_generator": "register_rot_generators",
}


def _env_list(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class Registry:
    """All components, by kind and name, plus the plugins they came from.

    Args:
        overrides: plugin or distribution names whose components win name clashes
            (default: ``LOSSCRAFT_OVERRIDE``).
    """

    def __init__(self, *, overrides: set[str] | None = None) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.overrides_allowed = (overrides if overrides is not None
                                  else _env_list(OVERRIDE_ENV_VAR) or set())
        #: entries of the load filter (``LOSSCRAFT_LOAD_PLUGINS``) and those matching nothing
        self.load_filter: set[str] | None = None
        self.unmatched: list[str] = []
        # every registration, by kind and by name (canonical names and aliases alike)
        self._offers: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS}
        # resolved views, rebuilt by _resolve()
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        #: kind -> old name -> current name (names a recipe could already use)
        self.aliases: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
        self.clashes: dict[str, dict[str, Clash]] = {kind: {} for kind in KINDS}
        self.overrides: list[Override] = []
        #: plugin name -> why its ``register_commands`` hook failed or was refused
        self.command_errors: dict[str, str] = {}
        self._loaded_entry_points: set[tuple[str, str]] = set()
        self._listed = False  # the load filter was checked against the installed entry points

    # ----------------------------------------------------------------- loading
    def load_entry_points(self, allowed: set[str] | None = None, *,
                          builtin: bool | None = None) -> None:
        """Import every entry point of the ``losscraft`` group (filtered by ``allowed``: entry
        point or distribution names; entries matching nothing go to `unmatched`). ``builtin``
        ``False`` imports only third-party plugins, ``True`` only losscraft's own (``None``:
        both); an entry point already loaded is not loaded again."""
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        first, self._listed = not self._listed, True
        self.load_filter = allowed
        if allowed is not None and first:
            known = {ep.name for ep in eps} | {ep.dist.name for ep in eps if ep.dist}
            self.unmatched = sorted(allowed - known)
            for entry in self.unmatched:
                log.warning("%s entry '%s' matches no installed plugin%s", LOAD_ENV_VAR, entry,
                            did_you_mean(entry, known))
        for ep in eps:
            dist = ep.dist.name if ep.dist else ""
            version = ep.dist.version if ep.dist else ""
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            if builtin is not None and (dist == BUILTIN_DISTRIBUTION) != builtin:
                continue
            if (ep.name, dist) in self._loaded_entry_points:
                continue
            self._loaded_entry_points.add((ep.name, dist))
            # two distributions may use one entry-point name: keep both, qualified by the second
            name = ep.name if ep.name not in self.plugins else f"{ep.name}@{dist or 'unknown'}"
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not break the rest
                self.plugins[name] = _failed(PluginInfo(name, dist, version), exc,
                                             "failed to load")
                continue
            self.add_plugin(module, name, distribution=dist, version=version, resolve=False)
        self._resolve()

    def add_plugin(self, plugin: object, name: str, *, distribution: str = "",
                   version: str = "", resolve: bool = True) -> PluginInfo:
        """Register a plugin object (a module or any object with hookimpls) and collect its
        components — all of them, or none when any hook fails. Used for entry points and for
        plugins registered from code or tests."""
        if name in self.plugins:
            raise PluginError(f"a plugin named '{name}' is already registered "
                              f"({self.plugins[name].label})")
        info = PluginInfo(name, distribution, version)
        self.plugins[name] = info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            return _failed(info, exc, "failed to register")
        try:
            check_hook_names(self.pm, name, plugin)
        except PluginError as exc:
            self.pm.unregister(name=name)
            return _failed(info, exc, "failed to register")
        staged: list[Component] = []
        for kind, hook_name in KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != name:
                    continue
                try:
                    impl.function(register=self._registrar(kind, info, staged))
                except Exception as exc:
                    self.pm.unregister(name=name)
                    _failed(info, exc, f"{hook_name} failed")
                    if resolve:
                        self._resolve()
                    return info
        info.components = staged
        if not staged and not any(impl.plugin_name == name for impl
                                  in self.pm.hook.register_commands.get_hookimpls()):
            info.note = nothing_registered(self.pm, name, plugin, info.label)
            log.warning("%s", info.note)
        for comp in staged:
            for key in (comp.name, *comp.aliases):
                self._offers[comp.kind].setdefault(key, []).append(comp)
        if resolve:
            self._resolve()
        return info

    def _registrar(self, kind: str, info: PluginInfo,
                   staged: list[Component]) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any], *,
                     aliases: tuple[str, ...] | list[str] = (), replaces: bool = False) -> None:
            """Register component ``name`` of this hook's kind, built by ``factory``.

            Args:
                name: the name recipes use (``plugin = "name"``).
                factory: a class or function; its keyword parameters are recipe parameters.
                aliases: older names that keep resolving to this component.
                replaces: opt in to replacing a built-in component of the same name.
            """
            if not isinstance(name, str) or not name:
                raise PluginError(f"component names are non-empty strings, got {name!r}")
            if not callable(factory):
                raise PluginError(f"{kind} '{name}': factory {factory!r} is not callable")
            taken = {k for c in staged if c.kind == kind for k in (c.name, *c.aliases)}
            for key in (name, *aliases):
                if key in taken:
                    raise PluginError(f"{kind.replace('_', ' ')} '{key}' is registered twice "
                                      "by this plugin")
            check_reserved(kind, name, factory)
            staged.append(Component(kind, name, factory, info.name, info.distribution,
                                    info.version, tuple(aliases), bool(replaces)))
        return register

    # ----------------------------------------------------------------- clashes
    def _resolve(self) -> None:
        """Rebuild `components`, `aliases`, `clashes` and `overrides` from every registration."""
        self.overrides = []
        for kind, offers in self._offers.items():
            table: dict[str, Component] = {}
            self.clashes[kind] = {}
            for key, comps in offers.items():
                if len(comps) == 1:
                    table[key] = comps[0]
                    continue
                winner, reason = self._winner(comps)
                if winner is None:
                    self.clashes[kind][key] = Clash(kind, key, list(comps))
                    continue
                table[key] = winner
                self.overrides.append(Override(kind, key, winner,
                                               [c for c in comps if c is not winner], reason))
            self.components[kind] = {k: c for k, c in table.items() if k == c.name}
            self.aliases[kind] = {k: c.name for k, c in table.items() if k != c.name}

    def _winner(self, comps: list[Component]) -> tuple[Component | None, str]:
        chosen = [c for c in comps if c.plugin in self.overrides_allowed
                  or (c.distribution and c.distribution in self.overrides_allowed)]
        if len(chosen) == 1:
            return chosen[0], f"{OVERRIDE_ENV_VAR} names it"
        if chosen:
            return None, ""
        replacing = [c for c in comps if c.replaces and not c.builtin]
        others = [c for c in comps if c not in replacing]
        if len(replacing) == 1 and others and all(c.builtin for c in others):
            return replacing[0], "registered with replaces=True"
        return None, ""

    # ----------------------------------------------------------------- lookup
    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` (or an alias) of ``kind``. A clash, or an unknown name, raises
        `PluginError` saying why: both providers of a clash; for an unknown name a did-you-mean,
        the known names, any plugin that failed to load (its exception is the error's cause, so
        ``--debug`` shows the original traceback) and any unmatched ``LOSSCRAFT_LOAD_PLUGINS``
        entry."""
        if kind not in KINDS:
            raise PluginError(f"unknown component kind '{kind}'; kinds: {', '.join(KINDS)}")
        clash = self.clashes[kind].get(name)
        if clash is not None:
            raise PluginError(clash.message)
        key = self.aliases[kind].get(name, name)
        if key in self.components[kind]:
            return self.components[kind][key]
        raise self.unknown(unknown_name_message(kind.replace("_", " "), name,
                                                self.names(kind) + sorted(self.aliases[kind])))

    def unknown(self, message: str) -> PluginError:
        """``message`` (an unknown name) extended by why a component may be missing: plugins
        that failed to load (the first one's exception is the error's cause), plugins that
        registered nothing, the ``LOSSCRAFT_LOAD_PLUGINS`` filter."""
        failed = self.failures
        if failed:
            message += "; " + "; ".join(f"{p.label} failed to load: {p.error}" for p in failed)
            message += " — see `losscraft plugins`"
        for plugin in self.plugins.values():
            if plugin.note:
                message += f"; {plugin.note}"
        if self.load_filter is not None:
            message += (f"; {LOAD_ENV_VAR} limits plugins to "
                        f"{', '.join(sorted(self.load_filter)) or 'none'}")
            if self.unmatched:
                message += f" (matching no installed plugin: {', '.join(self.unmatched)})"
        error = PluginError(message)
        error.__cause__ = next((p.exception for p in failed if p.exception is not None), None)
        error.__suppress_context__ = True  # as ``raise error from cause``
        return error

    def create(self, kind: str, name: str, params: dict[str, Any] | None = None) -> Any:
        """Instantiate component ``name`` with ``params`` (checked against its signature and
        annotations first)."""
        comp = self.get(kind, name)
        bind_params(comp, params or {})
        return comp.factory(**(params or {}))

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error]

    def report(self) -> dict[str, Any]:
        """What ``losscraft plugins --json`` prints: every plugin with its components (and
        aliases) or its error, the name clashes, the opt-in overrides and the
        ``LOSSCRAFT_LOAD_PLUGINS`` entries that matched nothing."""
        def component(c: Component) -> dict[str, Any]:
            return {"kind": c.kind, "name": c.name, "aliases": list(c.aliases),
                    "summary": c.summary}

        def provider(c: Component) -> dict[str, str]:
            return {"plugin": c.plugin, "distribution": c.distribution, "version": c.version}

        return {
            "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version,
                         "components": [component(c) for c in p.components], "error": p.error,
                         "note": p.note, "traceback": p.traceback}
                        for p in self.plugins.values()],
            "clashes": [{"kind": c.kind, "name": c.name, "message": c.message,
                         "providers": [provider(x) for x in c.providers]}
                        for kind in KINDS for c in self.clashes[kind].values()],
            "overrides": [{"kind": o.kind, "name": o.name, "winner": provider(o.winner),
                           "replaced": [provider(x) for x in o.replaced], "reason": o.reason}
                          for o in self.overrides],
            "unmatched": list(self.unmatched),
            "command_errors": dict(self.command_errors),
        }


def _failed(info: PluginInfo, exc: BaseException, what: str) -> PluginInfo:
    # our own errors say what is wrong; anything else needs its type to make sense
    info.error = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
    if what != "failed to load":
        info.error = f"{what}: {info.error}"
    info.traceback = "".join(traceback.format_exception(exc))
    info.exception = exc
    info.components = []
    log.warning("%s failed: %s", info.label, info.error)
    return info


def unknown_name_message(what: str, name: str, known: list[str]) -> str:
    hint = did_you_mean(name, known)
    return f"unknown {what} '{name}'{hint} (known: {', '.join(known) or 'none'})"


_REGISTRY: Registry | None = None
_BUILTINS_LOADED = False


def allowed_plugins() -> set[str] | None:
    """The plugin names allowed by ``LOSSCRAFT_LOAD_PLUGINS`` (``None``: all)."""
    return _env_list(LOAD_ENV_VAR)


def get_registry(*, reload: bool = False, builtin: bool = True) -> Registry:
    """The process-wide registry, loading entry points on first use. ``builtin=False`` loads
    only third-party plugins (all a command line needs to find plugin commands: losscraft's own
    plugins provide none), so that ``losscraft --help`` imports no torch; the next call without
    it loads the built-ins into the same registry."""
    global _REGISTRY, _BUILTINS_LOADED
    if _REGISTRY is None or reload:
        _REGISTRY, _BUILTINS_LOADED = Registry(), False
        _REGISTRY.load_entry_points(allowed_plugins(), builtin=None if builtin else False)
        _BUILTINS_LOADED = builtin
    elif builtin and not _BUILTINS_LOADED:
        _REGISTRY.load_entry_points(allowed_plugins(), builtin=True)
        _BUILTINS_LOADED = True
    return _REGISTRY
