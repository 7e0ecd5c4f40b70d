"""Daemon plug-ins, as the original: a ``plugins`` option names sections, each with ``module``.

Every class defined in that module that subclasses the daemon's plug-in base
(and passes its early probe) is made as ``cls(section, section_config, daemon)``
and kept if its :meth:`CCDaemonPlugin.probe` says yes.
"""

import inspect
import logging
from typing import TYPE_CHECKING, Any, Callable, List, Tuple, Type, TypeVar

import skytools
from skytools.config import ConfigError

from cc.loader import import_named
from cc.options import REQUIRED, Option

if TYPE_CHECKING:  # pragma: no cover
    from cc.daemon.base import CCDaemon

__all__ = ["CCDaemonPlugin", "load_plugins"]

P = TypeVar("P", bound="CCDaemonPlugin")


class CCDaemonPlugin:
    """Base of daemon plug-ins.  Override :meth:`probe`, :meth:`init` and :meth:`stop` as needed.

    ``OPTIONS`` declares a plug-in's own options of its section, besides ``module``.
    """

    #: what every plug-in section has
    MODULE = (Option("module", "str", REQUIRED, "the plug-in's module",
                     example="cc.daemon.plugins.pg_logforward.forward"),)  # fmt: skip
    OPTIONS: Tuple[Option, ...] = ()

    def __init__(self, name: str, cf: skytools.Config, daemon: "CCDaemon") -> None:
        self.name = name
        self.cf = cf
        self.daemon = daemon
        self.log = logging.getLogger("cc.plugin.%s" % name)

    def probe(self, *args: Any) -> bool:
        """Whether this plug-in wants to run here (the daemon says with what arguments)."""
        return True

    def init(self, *args: Any) -> None:
        """Set up, once probed."""

    def stop(self) -> None:
        """Release what :meth:`init` took."""


def load_plugins(
    daemon: "CCDaemon", base: Type[P], early_probe: Callable[[Type[P]], bool], *args: Any
) -> List[P]:
    """The plug-ins of the daemon's ``plugins`` sections, probed and initialised with ``args``.

    A section whose plug-ins cannot be loaded (no ``module``, a module that
    does not import, a plug-in that fails to start) is logged as an error of
    that section and counted in ``plugins.failed``; the daemon runs on with
    the others.
    """
    plugins: List[P] = []
    for section in daemon.cf.getlist("plugins"):
        try:
            plugins.extend(_load_section(daemon, section, base, early_probe, args))
        except (ConfigError, ImportError, ValueError) as ex:
            daemon.stats.inc("plugins.failed")
            daemon.log.error("plugin %s not loaded: %s", section, ex)
        except Exception:
            daemon.stats.inc("plugins.failed")
            daemon.log.error("plugin %s not loaded", section, exc_info=True)
    if plugins:
        daemon.log.info("loaded plugins: %s", ", ".join(type(p).__name__ for p in plugins))
    else:
        daemon.log.warning("No plugins loaded!")
    return plugins


def _load_section(
    daemon: "CCDaemon",
    section: str,
    base: Type[P],
    early_probe: Callable[[Type[P]], bool],
    args: Tuple[Any, ...],
) -> List[P]:
    """The plug-ins of one section; raises if any of them cannot be loaded."""
    pcf = skytools.Config(section, daemon.cf.filename, user_defs={"job_name": daemon.job_name})
    module = import_named("plug-in", pcf.get("module"), {}, ImportError)
    found = []
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if cls.__module__ != module.__name__ or not issubclass(cls, base):
            continue
        if not early_probe(cls):
            continue
        plugin = cls(section, pcf, daemon)
        if plugin.probe(*args):
            plugin.init(*args)
            found.append(plugin)
    return found
