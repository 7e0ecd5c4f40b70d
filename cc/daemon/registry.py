"""The daemons by short name, for jobmgr's ``module =`` and ``cc-daemon NAME``.

Adding a daemon means adding its module (with ``CC_DAEMON = "ClassName"``)
and one line in :data:`DAEMONS`.
"""

import importlib
from typing import Dict, Type

from skytools.config import ConfigError

from cc.daemon.base import CCDaemon

__all__ = ["DAEMONS", "load_daemon_class"]

#: short name -> module; the original's module paths work as names too
DAEMONS: Dict[str, str] = {
    "discovery": "cc.daemon.discovery",
    "infoscript": "cc.daemon.infoscript",
    "infosender": "cc.daemon.infosender",
    "logtail": "cc.daemon.logtail",
    "pg_logforward": "cc.daemon.pg_logforward",
    "taskexec": "cc.daemon.taskexec",
    "taskrunner": "cc.daemon.taskexec",
}


def load_daemon_class(name: str) -> Type[CCDaemon]:
    """The daemon class of ``name``: a short name from :data:`DAEMONS` or a module path."""
    modname = DAEMONS.get(name, name)
    try:
        module = importlib.import_module(modname)
    except ImportError as ex:
        raise ConfigError(
            "cannot load daemon %r (%s); known daemons: %s" % (name, ex, ", ".join(sorted(DAEMONS)))
        ) from None
    cls = getattr(module, getattr(module, "CC_DAEMON", ""), None)
    if not (isinstance(cls, type) and issubclass(cls, CCDaemon)):
        raise ConfigError("module %s does not define a daemon (CC_DAEMON)" % modname)
    return cls
