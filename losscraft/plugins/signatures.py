"""A component's factory signature: whether it takes a parameter, the recipe keys it must not
take (the core reads them itself), and recipe parameters bound against it."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable

from losscraft.errors import PluginError, did_you_mean
from losscraft.plugins.records import Component
from losscraft.plugins.params import ParameterError, check_params

#: Recipe keys the core reads from a component's table (they never reach the factory), per kind.
#: A factory parameter with one of these names could never be set, so registering it fails.
RESERVED_KEYS: dict[str, tuple[str, ...]] = {
    "objective": ("plugin", "name", "weight", "penalty", "allow_negative_weight"),
    "data_source": ("plugin", "limit"),
    "model": ("plugin", "from_stage"),
    "scorer": ("plugin",),
    "reranker": ("plugin",),
    "rot_generator": ("plugin",),
}


def factory_parameters(factory: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    """The parameters of ``factory``'s signature, by name (none for a builtin without one)."""
    try:
        return inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}


def accepts(factory: Callable[..., Any], name: str) -> bool:
    """Whether ``factory``'s signature has a parameter ``name`` (e.g. an objective's ``fused``)."""
    return name in factory_parameters(factory)


def check_reserved(kind: str, name: str, factory: Callable[..., Any]) -> None:
    """Raise `PluginError` when ``factory`` takes a parameter named like a reserved recipe key
    of ``kind`` (the core would read that key itself, so the plugin could never receive it)."""
    clashing = [p for p in factory_parameters(factory) if p in RESERVED_KEYS[kind]]
    if clashing:
        raise PluginError(f"{kind.replace('_', ' ')} '{name}': parameter '{clashing[0]}' is a "
                          f"reserved recipe key for this kind ({', '.join(RESERVED_KEYS[kind])})"
                          "; rename it")


def bind_params(comp: Component, params: dict[str, Any]) -> inspect.BoundArguments:
    """Check ``params`` against the factory's signature and its annotations; `ParameterError`
    (a `PluginError`) names the bad parameter in ``.param``."""
    sig = inspect.signature(comp.factory)
    accepted = [p.name for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    what = f"{comp.kind.replace('_', ' ')} '{comp.name}'"
    for key in params:
        if key not in accepted and not takes_kwargs:
            hint = did_you_mean(key, accepted)
            raise ParameterError(f"{what} has no parameter '{key}'{hint} "
                                 f"(parameters: {', '.join(accepted) or 'none'})", param=key)
    try:
        bound = sig.bind(**params)
    except TypeError as exc:
        missing = next((p.name for p in sig.parameters.values()
                        if p.default is p.empty and p.name not in params
                        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)), None)
        raise ParameterError(f"{what}: {exc}", param=missing) from None
    try:
        check_params(comp.factory, params)
    except ParameterError as exc:
        raise ParameterError(f"{what}: parameter '{exc.path}': {exc.detail}",
                             param=exc.param, path=exc.path, detail=exc.detail) from None
    return bound
