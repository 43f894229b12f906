"""The plugin manager: discovers plugins through the ``losscraft`` entry-point group and collects
the components they register.

Built-in plugins register through the same entry points as third-party packages. A plugin that
fails to import (or whose hook raises) is recorded in `Registry.failures` and everything else keeps
working. ``LOSSCRAFT_LOAD_PLUGINS`` limits which plugins load: a comma-separated list of
entry-point names or distribution names (empty string: none), like simonw/llm's
``LLM_LOAD_PLUGINS``.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable

import pluggy

from losscraft import hookspecs
from losscraft.errors import PluginError, did_you_mean

ENTRY_POINT_GROUP = "losscraft"
LOAD_ENV_VAR = "LOSSCRAFT_LOAD_PLUGINS"

#: component kind -> hook name
KINDS: dict[str, str] = {
    "objective": "register_objectives",
    "data_source": "register_data_sources",
    "model": "register_models",
    "scorer": "register_scorers",
    "reranker": "register_rerankers",
    "rot_generator": "register_rot_generators",
}


@dataclass
class Component:
    """One registered component: its kind, name, factory and the plugin that provided it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str = ""
    version: str = ""

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.splitlines()[0] if doc else ""


@dataclass
class PluginInfo:
    """A plugin (entry point or programmatically registered object) and what it provided."""

    name: str
    distribution: str = ""
    version: str = ""
    components: list[Component] = field(default_factory=list)
    error: str | None = None


class Registry:
    """All components, by kind and name, plus the plugins they came from."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}

    # ----------------------------------------------------------------- loading
    def load_entry_points(self, allowed: set[str] | None = None) -> None:
        """Import every entry point of the ``losscraft`` group (filtered by ``allowed``)."""
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else ""
            version = ep.dist.version if ep.dist else ""
            if allowed is not None and ep.name not in allowed and dist not in allowed:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not break the rest
                self.plugins[ep.name] = PluginInfo(ep.name, dist, version,
                                                   error=f"{type(exc).__name__}: {exc}")
                continue
            self.add_plugin(module, ep.name, distribution=dist, version=version)

    def add_plugin(self, plugin: object, name: str, *, distribution: str = "",
                   version: str = "") -> PluginInfo:
        """Register a plugin object (a module or any object with hookimpls) and collect its
        components. Used for entry points and for plugins registered from code or tests."""
        info = PluginInfo(name, distribution, version)
        self.plugins[name] = info
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            info.error = f"{type(exc).__name__}: {exc}"
            return info
        for kind, hook_name in KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != name:
                    continue
                try:
                    impl.function(register=self._registrar(kind, info))
                except Exception as exc:
                    info.error = f"{hook_name} failed: {type(exc).__name__}: {exc}"
        return info

    def _registrar(self, kind: str, info: PluginInfo) -> Callable[[str, Callable], None]:
        def register(name: str, factory: Callable[..., Any]) -> None:
            existing = self.components[kind].get(name)
            if existing is not None and existing.plugin != info.name:
                raise PluginError(f"{kind} '{name}' is already registered by plugin "
                                  f"'{existing.plugin}'")
            comp = Component(kind, name, factory, info.name, info.distribution, info.version)
            self.components[kind][name] = comp
            info.components.append(comp)
        return register

    # ----------------------------------------------------------------- lookup
    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; unknown names raise `PluginError` with a
        did-you-mean and the list of known names."""
        if kind not in KINDS:
            raise PluginError(f"unknown component kind '{kind}'; kinds: {', '.join(KINDS)}")
        try:
            return self.components[kind][name]
        except KeyError:
            raise PluginError(unknown_name_message(kind.replace("_", " "), name,
                                                   self.names(kind))) from None

    def create(self, kind: str, name: str, params: dict[str, Any] | None = None) -> Any:
        """Instantiate component ``name`` with ``params`` (bound against its signature first)."""
        comp = self.get(kind, name)
        bind_params(comp, params or {})
        return comp.factory(**(params or {}))

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins.values() if p.error]


def unknown_name_message(what: str, name: str, known: list[str]) -> str:
    hint = did_you_mean(name, known)
    return f"unknown {what} '{name}'{hint} (known: {', '.join(known) or 'none'})"


def bind_params(comp: Component, params: dict[str, Any]) -> inspect.BoundArguments:
    """Check ``params`` against the factory's signature; `PluginError` names the bad parameter."""
    sig = inspect.signature(comp.factory)
    accepted = [p.name for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    for key in params:
        if key not in accepted and not takes_kwargs:
            hint = did_you_mean(key, accepted)
            raise PluginError(f"{comp.kind.replace('_', ' ')} '{comp.name}' has no parameter "
                              f"'{key}'{hint} (parameters: {', '.join(accepted) or 'none'})")
    try:
        return sig.bind(**params)
    except TypeError as exc:
        raise PluginError(f"{comp.kind.replace('_', ' ')} '{comp.name}': {exc}") from None


_REGISTRY: Registry | None = None


def allowed_plugins() -> set[str] | None:
    """The plugin names allowed by ``LOSSCRAFT_LOAD_PLUGINS`` (``None``: all)."""
    value = os.environ.get(LOAD_ENV_VAR)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def get_registry(*, reload: bool = False) -> Registry:
    """The process-wide registry, loading entry points on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        registry = Registry()
        registry.load_entry_points(allowed_plugins())
        _REGISTRY = registry
    return _REGISTRY
