"""What jobmgr tells the daemons it launches, through their environment.

jobmgr sets these variables; the daemon base reads them with
:func:`from_environ`.  A daemon started by hand has none of them and runs
standalone: no ``job.config`` query, no keepalives.
"""

import os
from typing import Dict, Mapping, NamedTuple, Optional

__all__ = ["JobEnv", "from_environ", "VARIABLES"]

JOB_NAME = "CC_JOB_NAME"
SOCKET = "CC_SOCKET"
KEEPALIVE_PERIOD = "CC_KEEPALIVE_PERIOD"
PARENT_PID = "CC_JOBMGR_PID"
HOSTNAME = "CC_HOSTNAME"
VARIABLES = (JOB_NAME, SOCKET, KEEPALIVE_PERIOD, PARENT_PID, HOSTNAME)
WILDCARDS = (("tcp://0.0.0.0:", "tcp://127.0.0.1:"), ("tcp://[::]:", "tcp://[::1]:"))


class JobEnv(NamedTuple):
    """A job's view of the jobmgr that runs it."""

    #: the job's section in the server's config file
    job_name: str
    #: the address the server really listens on (a connectable form of its bound endpoint)
    socket: str
    keepalive_period: float
    #: the cc-server process; the daemon stops if it is orphaned
    parent_pid: int
    #: the server's ``hostname``, for the daemon's messages ('' = the daemon reads it itself)
    hostname: str = ""

    def to_environ(self) -> Dict[str, str]:
        return {
            JOB_NAME: self.job_name,
            SOCKET: self.socket,
            KEEPALIVE_PERIOD: repr(self.keepalive_period),
            PARENT_PID: str(self.parent_pid),
            HOSTNAME: self.hostname,
        }


def from_environ(environ: Mapping[str, str] = os.environ) -> Optional[JobEnv]:
    """The jobmgr settings of this process, or None when not run by jobmgr."""
    if not environ.get(JOB_NAME):
        return None
    try:
        return JobEnv(
            environ[JOB_NAME],
            environ.get(SOCKET, ""),
            float(environ.get(KEEPALIVE_PERIOD, "10")),
            int(environ.get(PARENT_PID, "0")),
            environ.get(HOSTNAME, ""),
        )
    except ValueError:
        return None


def without_job_env(environ: Mapping[str, str]) -> Dict[str, str]:
    """``environ`` without jobmgr's variables (for a job's own children)."""
    return {k: v for k, v in environ.items() if k not in VARIABLES}


def connectable(endpoint: str) -> str:
    """A bound endpoint in a form a client can connect to (wildcard address -> loopback)."""
    for wildcard, loopback in WILDCARDS:
        if endpoint.startswith(wildcard):
            return loopback + endpoint[len(wildcard) :]
    return endpoint
