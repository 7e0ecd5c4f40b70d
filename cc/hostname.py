"""The host name a cc and its daemons put in messages: ``[ccserver] hostname``.

A host is named as its operator knows it, which need not be the machine's
name (a renamed host, many named hosts on one test machine).  The name is
one path component on the receiving side (statswriter, logwriter), so only
letters, digits, ``.``, ``_`` and ``-`` are accepted.
"""

import re
import socket

import skytools
from skytools.config import ConfigError

__all__ = ["configured_hostname"]

HOSTNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$")


def configured_hostname(server_cf: skytools.Config) -> str:
    """``hostname`` of ``[ccserver]``, or the machine's name; ConfigError when unusable."""
    name = server_cf.get("hostname", "") or socket.gethostname()
    if not HOSTNAME_RE.match(name):
        raise ConfigError(
            "hostname = %r: use letters, digits, '.', '_' and '-' (at most 253)" % name[:300]
        )
    return name
