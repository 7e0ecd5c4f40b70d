"""The daemons by short name, for jobmgr's ``module =`` and ``cc-daemon NAME``.

Adding a daemon means adding its module (with ``CC_DAEMON = "ClassName"``)
and one line in :data:`DAEMONS`.
"""

from typing import Dict, Type

from skytools.config import ConfigError

from cc.daemon.base import CCDaemon
from cc.loader import load_class

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
    return load_class("daemon", name, DAEMONS, "CC_DAEMON", CCDaemon, ConfigError)
