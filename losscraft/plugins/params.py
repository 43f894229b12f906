"""Check a plugin's recipe parameters against its factory's annotations.

A plugin annotates its parameters (``only_safe: bool = True``, ``margin: float = 0.5``,
``split: Literal["train", "test"] = "train"``, ``fields: list[str] | None = None``) and
`check_params` rejects a recipe value of the wrong type before the factory runs, naming the
parameter path (``fields[2]``). Plugins no longer hand-write type checks; they still check values
(ranges, files) in their constructor.

Understood: ``bool``, ``int``, ``float`` (an int is accepted), ``str``, ``pathlib.Path`` (a string
is accepted), ``Literal[...]``, ``list[X]``/``tuple[X, ...]``/``Sequence[X]``, ``dict[K, V]``,
``X | None``/``Optional[X]`` and other unions (the value must match one arm), ``Any``. Any other
annotation (a protocol, a class used only from code) accepts the value unchecked unless it is a
plain class, in which case the value must be an instance of it. Unresolvable annotations (a name
imported only under ``TYPE_CHECKING``) are skipped.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import os
import types
import typing
from pathlib import PurePath
from typing import Any, Callable

from losscraft.errors import PluginError

__all__ = ["ParameterError", "check_params", "check_value", "parameter_hints"]


class ParameterError(PluginError):
    """A parameter has no place in the factory's signature or the wrong type.

    ``param`` is the parameter's name, ``path`` the path inside it (``fields[2]``), ``detail``
    the message without location."""

    def __init__(self, message: str, *, param: str | None = None, path: str | None = None,
                 detail: str | None = None):
        super().__init__(message)
        self.param = param
        self.path = path or param
        self.detail = detail or message


def parameter_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``factory``'s parameters (its ``__init__`` for a class);
    parameters whose annotation cannot be resolved are left out."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        return {k: v for k, v in typing.get_type_hints(target).items() if k != "return"}
    except Exception:  # a forward reference that does not resolve: resolve one by one
        pass
    raw = getattr(target, "__annotations__", {}) or {}
    globalns = getattr(inspect.unwrap(target), "__globals__", {})
    hints = {}
    for name, annotation in raw.items():
        if name == "return":
            continue
        try:
            hints[name] = (eval(annotation, globalns) if isinstance(annotation, str)  # noqa: S307
                           else annotation)
        except Exception:
            continue
    return hints


def check_params(factory: Callable[..., Any], params: dict[str, Any]) -> None:
    """Raise `ParameterError` for the first value in ``params`` whose type does not match the
    annotation of the factory parameter of that name."""
    hints = parameter_hints(factory)
    for name, value in params.items():
        if name in hints:
            check_value(value, hints[name], name)


def _name(tp: Any) -> str:
    if tp is type(None):
        return "none"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(_name(a) for a in typing.get_args(tp) if a is not Ellipsis)
        return f"{getattr(origin, '__name__', str(origin))}[{args}]" if args else str(origin)
    return getattr(tp, "__name__", str(tp))


def _got(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def check_value(value: Any, tp: Any, path: str) -> None:
    """Raise `ParameterError` naming ``path`` unless ``value`` matches annotation ``tp``."""
    problem = _mismatch(value, tp, path)
    if problem is not None:
        where, detail = problem
        raise ParameterError(f"parameter '{where}': {detail}", param=path.split("[")[0],
                             path=where, detail=detail)


def _mismatch(value: Any, tp: Any, path: str) -> tuple[str, str] | None:
    """``(path, message)`` of the first mismatch, or ``None``."""
    if tp is Any or tp is inspect.Parameter.empty or isinstance(tp, typing.TypeVar):
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _mismatch(value, args[0], path)
    if origin is typing.Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return None
        return path, f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}"
    if origin in (typing.Union, types.UnionType):
        problems = [_mismatch(value, arm, path) for arm in args]
        if any(p is None for p in problems):
            return None
        deeper = [p for p in problems if p[0] != path]  # a list matched but an item did not
        if len(deeper) == 1:
            return deeper[0]
        return path, f"expected {_name(tp)}, got {_got(value)}"
    if tp is type(None) or tp is None:
        return None if value is None else (path, f"expected none, got {_got(value)}")
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterable,
                  collections.abc.Collection, set, frozenset):
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, set,
                                                                           frozenset)):
            return path, f"expected a list of {_name(args[0]) if args else 'values'}, " \
                         f"got {_got(value)}"
        items = [a for a in args if a is not Ellipsis]
        if origin is tuple and len(items) > 1 and Ellipsis not in args:
            if len(value) != len(items):
                return path, f"expected {len(items)} items, got {len(value)}"
            pairs = list(zip(value, items))
        else:
            pairs = [(v, items[0]) for v in value] if items else []
        for i, (v, item_tp) in enumerate(pairs):
            problem = _mismatch(v, item_tp, f"{path}[{i}]")
            if problem is not None:
                return problem
        return None
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return path, f"expected a table, got {_got(value)}"
        if len(args) == 2:
            for k, v in value.items():
                problem = _mismatch(v, args[1], f"{path}.{k}")
                if problem is not None:
                    return problem
        return None
    if origin is not None:  # another generic (Callable[...], type[...]): not a recipe value
        return None
    if tp is bool:
        return None if isinstance(value, bool) else (path, f"expected bool (true/false), "
                                                           f"got {_got(value)}")
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else (path, f"expected int, got {_got(value)}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return path, f"expected float, got {_got(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return path, f"expected a finite number, got {value}"
        return None
    if tp is str:
        return None if isinstance(value, str) else (path, f"expected str, got {_got(value)}")
    if inspect.isclass(tp) and issubclass(tp, (PurePath, os.PathLike)):
        ok = isinstance(value, (str, os.PathLike))
        return None if ok else (path, f"expected a path (string), got {_got(value)}")
    if inspect.isclass(tp) and not getattr(tp, "_is_protocol", False):
        try:
            ok = isinstance(value, tp)
        except TypeError:
            return None
        return None if ok else (path, f"expected {_name(tp)}, got {_got(value)}")
    if inspect.isclass(tp) and getattr(tp, "_is_runtime_protocol", False):
        return None if isinstance(value, tp) else (path, f"expected {_name(tp)}, got "
                                                         f"{_got(value)}")
    return None
