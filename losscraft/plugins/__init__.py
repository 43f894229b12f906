"""The plugin system: hook specifications, the registry that discovers plugins through the
``losscraft`` entry-point group, parameter checking against factory signatures, and the protocols
of the non-loss components plugins provide."""

from losscraft.plugins.hookspecs import hookimpl
from losscraft.plugins.registry import Registry, get_registry

__all__ = ["Registry", "get_registry", "hookimpl"]
