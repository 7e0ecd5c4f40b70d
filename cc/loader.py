"""Plug-ins named in the config, imported in one way: handlers, daemons, pg_logforward's plug-ins.

A name is a short name from a registry (``echo``, ``logtail``) or a module
path (the original's, or a user's own module).  It is imported when the
config is read, and a failure raises the caller's config error naming the
section, like supervisor's ``get_plugins`` (STYLE.md 4).
"""

import importlib
from types import ModuleType
from typing import Mapping, Type, TypeVar

__all__ = ["import_named", "declared_class", "load_class"]

T = TypeVar("T")


def import_named(
    kind: str, name: str, registry: Mapping[str, str], error: Type[Exception], where: str = ""
) -> ModuleType:
    """The module of ``name`` (a short name in ``registry`` or a module path), or ``error``
    saying which ``kind`` of plug-in could not be loaded, prefixed with ``where``."""
    modname = registry.get(name, name)
    try:
        return importlib.import_module(modname)
    except ImportError as ex:
        known = "; known %ss: %s" % (kind, ", ".join(sorted(registry))) if registry else ""
        raise error("%scannot load %s %r (%s)%s" % (where, kind, name, ex, known)) from None


def declared_class(
    module: ModuleType,
    marker: str,
    base: Type[T],
    kind: str,
    error: Type[Exception],
    where: str = "",
) -> Type[T]:
    """The class ``module`` names in its ``marker`` attribute (``CC_HANDLER = "Echo"``),
    which must derive from ``base``."""
    cls = getattr(module, getattr(module, marker, "") or "", None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise error(
            "%smodule %s does not define a %s (%s)" % (where, module.__name__, kind, marker)
        )
    return cls


def load_class(
    kind: str,
    name: str,
    registry: Mapping[str, str],
    marker: str,
    base: Type[T],
    error: Type[Exception],
    where: str = "",
) -> Type[T]:
    """:func:`import_named`, then :func:`declared_class`."""
    module = import_named(kind, name, registry, error, where)
    return declared_class(module, marker, base, kind, error, where)
