"""What the plugin registry records: each registered component, the plugin that provided it, and
the names two plugins fought over (clashes, and overrides a plugin opted into)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

LOAD_ENV_VAR = "LOSSCRAFT_LOAD_PLUGINS"
OVERRIDE_ENV_VAR = "LOSSCRAFT_OVERRIDE"
#: the distribution whose components count as built-ins (replaceable only by opt-in)
BUILTIN_DISTRIBUTION = "losscraft"


def describe_plugin(name: str, distribution: str = "", version: str = "") -> str:
    """``plugin 'name' (distribution version)`` (distribution part omitted when unknown)."""
    dist = " ".join(p for p in (distribution, version) if p)
    return f"plugin '{name}'" + (f" ({dist})" if dist else "")


@dataclass
class Component:
    """One registered component: its kind, name, factory and the plugin that provided it.
    ``aliases`` are older names that still resolve to it; ``replaces`` is its opt-in to override
    a built-in of the same name."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    distribution: str = ""
    version: str = ""
    aliases: tuple[str, ...] = ()
    replaces: bool = False

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.splitlines()[0] if doc else ""

    @property
    def provider(self) -> str:
        """``plugin 'p' (dist 1.0)``: who provides this component, for messages."""
        return describe_plugin(self.plugin, self.distribution, self.version)

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@dataclass
class PluginInfo:
    """A plugin (entry point or programmatically registered object) and what it provided.
    ``error``/``traceback`` are set when it failed (then ``components`` is empty); ``note`` when
    it loaded but registered nothing (no component, no command)."""

    name: str
    distribution: str = ""
    version: str = ""
    components: list[Component] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    note: str | None = None

    @property
    def label(self) -> str:
        return describe_plugin(self.name, self.distribution, self.version)


@dataclass
class Clash:
    """Several plugins provide the same component name; none of them is used."""

    kind: str
    name: str
    providers: list[Component]

    @property
    def message(self) -> str:
        who = " and ".join(c.provider for c in self.providers)
        return (f"{self.kind.replace('_', ' ')} '{self.name}' is provided by {who}; neither is "
                f"used. Uninstall one, limit plugins with {LOAD_ENV_VAR}, or choose one with "
                f"{OVERRIDE_ENV_VAR}=<plugin>")


@dataclass
class Override:
    """A component that replaces another plugin's component of the same name (by opt-in)."""

    kind: str
    name: str
    winner: Component
    replaced: list[Component]
    reason: str   # "replaces=True" or the LOSSCRAFT_OVERRIDE entry
