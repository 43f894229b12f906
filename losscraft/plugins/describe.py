"""One component's recipe parameters, read from its factory: name, type (the annotation as
written), default, whether a recipe must give it, and the text its docstring's ``Args:`` section
gives it. What ``losscraft plugins NAME`` prints."""

from __future__ import annotations

import inspect
import re
from typing import Any

from losscraft.errors import PluginError
from losscraft.plugins.records import Component
from losscraft.plugins.registry import KINDS, Registry, unknown_name_message
from losscraft.plugins.signatures import RESERVED_KEYS, factory_parameters

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params)\s*:\s*$")
_ARG = re.compile(r"^((?:\*{0,2}\w+\s*,\s*)*\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_NAMES = re.compile(r"^(?:\w+\s*,\s*)+$")  # ``a, b,`` continued on the next line


def _doc(component: Component) -> str:
    doc = inspect.getdoc(component.factory) or ""
    if not doc and inspect.isclass(component.factory):
        doc = inspect.getdoc(component.factory.__init__) or ""
    return doc


def split_doc(doc: str) -> tuple[str, dict[str, str]]:
    """``(description, {parameter: text})`` of a Google-style docstring: the text before the
    ``Args:`` section (later sections dropped) and each argument's text, joined onto one line."""
    description: list[str] = []
    args: dict[str, str] = {}
    section, current, indent, pending = None, [], None, ""
    for line in doc.splitlines():
        stripped = line.strip()
        if _SECTION.match(stripped) and not line.startswith(" "):
            section, current, indent = "args", None, None
            continue
        if section == "args":
            if stripped and not line.startswith(" "):  # the next section ("Returns:")
                section = "other"
                continue
            width = len(line) - len(line.lstrip())
            top = indent is None or width <= indent
            match = _ARG.match(pending + stripped)
            if top and _NAMES.match(stripped):
                pending += stripped + " "
            elif match and top:
                indent, pending = width, ""
                current = [n.strip().lstrip("*") for n in match.group(1).split(",")]
                for name in current:
                    args[name] = match.group(3).strip()
            elif current and stripped:
                for name in current:
                    args[name] = f"{args[name]} {stripped}".strip()
        elif section is None:
            description.append(line)
    return "\n".join(description).strip(), args


def _annotation(param: inspect.Parameter) -> str:
    annotation = param.annotation
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):  # ``from __future__ import annotations``: as written
        return annotation
    return inspect.formatannotation(annotation)


def describe_component(component: Component) -> dict[str, Any]:
    """What a recipe can set on ``component``: ``{"kind", "name", "aliases", "plugin",
    "distribution", "version", "description", "parameters": [{"name", "type", "default",
    "required", "help"}]}`` (``default`` is ``repr``'d; parameters the core reads itself are
    never the factory's, so they are not listed)."""
    description, helps = split_doc(_doc(component))
    parameters = []
    for name, param in factory_parameters(component.factory).items():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY) \
                or name in ("self", *RESERVED_KEYS.get(component.kind, ())):
            continue
        required = param.default is param.empty
        parameters.append({"name": name, "type": _annotation(param),
                           "default": None if required else repr(param.default),
                           "required": required, "help": helps.get(name, "")})
    return {"kind": component.kind, "name": component.name, "aliases": list(component.aliases),
            "plugin": component.plugin, "distribution": component.distribution,
            "version": component.version, "description": description,
            "parameters": parameters}


def find_component(registry: Registry, query: str) -> Component:
    """The component ``query`` names: ``name`` (or an alias) of whichever kind has it, or
    ``kind:name``. `PluginError` when no kind has it (did-you-mean, and why a plugin may be
    missing) or several do (asking for ``kind:name``)."""
    kind, sep, name = query.partition(":")
    if sep:
        kind = kind.replace("-", "_")
        if kind not in KINDS:
            raise PluginError(f"unknown component kind '{kind}' in '{query}'; kinds: "
                              f"{', '.join(KINDS)}")
        return registry.get(kind, name)
    kinds = [k for k in KINDS if query in registry.components[k]
             or query in registry.aliases[k] or query in registry.clashes[k]]
    if len(kinds) > 1:
        raise PluginError(f"'{query}' names a component of several kinds; give one of "
                          + ", ".join(f"{k}:{query}" for k in kinds))
    if kinds:
        return registry.get(kinds[0], query)
    known = [f"{k}:{n}" for k in KINDS for n in registry.names(k)]
    names = [n for k in KINDS for n in (*registry.names(k), *registry.aliases[k])]
    message = unknown_name_message("component", query, names)
    message = message[:message.index(" (known:")] + f" (known: {', '.join(known) or 'none'})"
    raise registry.unknown(message)
