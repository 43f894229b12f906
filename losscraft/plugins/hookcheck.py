"""What a plugin module got wrong about hooks, found before it can silently do nothing: a
``@hookimpl`` whose name is no hook (pluggy's ``check_pending`` validation, with the closest
hook named), and a plugin that registers nothing (``@hookimpl`` forgotten, or hooks that never
call ``register``)."""

from __future__ import annotations

import difflib
import inspect

import pluggy

from losscraft.errors import PluginError


def plugin_label(plugin: object) -> str:
    """``module my_focal`` for a module, else ``object <repr>``: where the hook was written."""
    if inspect.ismodule(plugin):
        return f"module {plugin.__name__}"
    name = getattr(plugin, "__module__", None) or ""
    return f"{type(plugin).__name__} object" + (f" of module {name}" if name else "")


def check_hook_names(pm: pluggy.PluginManager, plugin_name: str, plugin: object) -> None:
    """Raise `PluginError` when ``plugin`` (registered in ``pm`` as ``plugin_name``) marks with
    ``@hookimpl`` a function that is no hook, naming the module and the closest hook. Pluggy
    would accept it (as a hook nobody calls) until ``check_pending``."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError:
        pass  # below: which of this plugin's hooks is unknown, and the closest real one
    else:
        return
    known = _hook_names(pm)
    for name in sorted(vars(pm.hook)):
        caller = getattr(pm.hook, name)
        if name.startswith("_") or caller.has_spec():
            continue
        if any(impl.plugin_name == plugin_name for impl in caller.get_hookimpls()):
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (hooks: {', '.join(known)})"
            raise PluginError(f"{plugin_label(plugin)}: unknown hook '{name}'{hint}")


def _hook_names(pm: pluggy.PluginManager) -> list[str]:
    return sorted(name for name in vars(pm.hook)
                  if not name.startswith("_") and getattr(pm.hook, name).has_spec())


def unmarked_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Functions of ``plugin`` named like a hook (or nearly: ``register_objective``) that lack
    ``@hookimpl``, so pluggy never calls them."""
    known = _hook_names(pm)
    found = []
    for attr in dir(plugin):
        if not attr.startswith("register") or pm.parse_hookimpl_opts(plugin, attr) is not None:
            continue
        if callable(getattr(plugin, attr, None)) and difflib.get_close_matches(attr, known, n=1):
            found.append(attr)
    return found


def nothing_registered(pm: pluggy.PluginManager, plugin_name: str, plugin: object,
                       label: str) -> str:
    """The note for a plugin that registered no component and no command:
    ``plugin 'x' loaded but registered nothing: is `@hookimpl` missing?`` (with the unmarked
    functions when there are any)."""
    unmarked = unmarked_hooks(pm, plugin)
    has_impls = any(impl.plugin_name == plugin_name
                    for name in vars(pm.hook) if not name.startswith("_")
                    for impl in getattr(pm.hook, name).get_hookimpls())
    if unmarked:
        return (f"{label} loaded but registered nothing: is `@hookimpl` missing? "
                f"({', '.join(unmarked)} in {plugin_label(plugin)} is not marked)")
    if has_impls:
        return f"{label} loaded but registered nothing: its hooks never call `register`"
    return f"{label} loaded but registered nothing: is `@hookimpl` missing?"
