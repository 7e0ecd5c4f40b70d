"""What jobmgr tells the daemons it launches, through their environment.

jobmgr sets these variables; the daemon base reads them with
:func:`from_environ`.  A daemon started by hand has none of them and runs
standalone: no ``job.config`` query, no keepalives.
"""

import os
from typing import Dict, Mapping, NamedTuple, Optional

import skytools

from cc.options import Option

__all__ = ["JobEnv", "JOB_OPTIONS", "from_environ", "job_defaults", "VARIABLES"]

#: what jobmgr reads of a job's section (the timings also from jobmgr's own section, as
#: defaults for every job)
JOB_OPTIONS = (
    Option("module", "str", None, "the daemon: a short name (infosender) or a module path"),
    Option("script", "path", None, "or an executable, run with: config.ini section"),
    Option("restart-delay", "seconds", 1, "first delay before a restart, doubling",
           aliases=("watchdog-formula-b",)),
    Option("restart-delay-max", "seconds", 300, "longest delay before a restart",
           aliases=("watchdog-formula-cap",)),
    Option("watchdog-reset", "seconds", 3600, "a run this long resets the delay"),
    Option("start-seconds", "seconds", 1, "a job that runs this long has started"),
    Option("start-retries", "int", 3, "exits within start-seconds in a row before FATAL"
           " (0: never)"),
    Option("keepalive-period", "seconds", 10, "seconds between the daemon's job.keepalive"),
    Option("keepalive-timeout", "seconds", 30, "a job silent this long is killed and restarted"
           " (default 3 x keepalive-period)"),
    Option("kill-grace", "seconds", 5, "seconds between TERM and KILL of a hung job"),
    Option("stop-timeout", "seconds", 10, "seconds a stopping job has before KILL"),
)  # fmt: skip

JOB_NAME = "CC_JOB_NAME"
SOCKET = "CC_SOCKET"
KEEPALIVE_PERIOD = "CC_KEEPALIVE_PERIOD"
PARENT_PID = "CC_JOBMGR_PID"
HOSTNAME = "CC_HOSTNAME"
TOKEN = "CC_JOB_TOKEN"
VARIABLES = (JOB_NAME, SOCKET, KEEPALIVE_PERIOD, PARENT_PID, HOSTNAME, TOKEN)
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
    #: what the job shows in ``job.config``: jobmgr answers a job its own section only
    token: str = ""

    def to_environ(self) -> Dict[str, str]:
        return {
            JOB_NAME: self.job_name,
            SOCKET: self.socket,
            KEEPALIVE_PERIOD: repr(self.keepalive_period),
            PARENT_PID: str(self.parent_pid),
            HOSTNAME: self.hostname,
            TOKEN: self.token,
        }


def job_defaults(server_cf: skytools.Config, section: str) -> Dict[str, str]:
    """What a daemon's section inherits from ``[ccserver]`` (the original's make_job_defaults).

    ``job_name`` is ``<server job>.<section>``; ``pidfile`` is the server's
    pidfile template, uninterpolated, so that ``%(job_name)s`` expands per
    job (``~/pid/cclocal.d:logtail.pid``).  A template without
    ``%(job_name)s`` would name the server's own pidfile: the job's goes
    beside it as ``<job_name>.pid``.  jobmgr and the daemon base both use
    this, so a daemon and the jobmgr that runs it agree on its pidfile.
    """
    defaults = {
        "use_skylog": "0",
        "service_name": section,
        "job_name": "%s.%s" % (server_cf.get("job_name"), section),
    }
    main = server_cf.main_section
    if server_cf.cf.has_option(main, "pidfile"):
        template = server_cf.cf.get(main, "pidfile", raw=True)
        if template and "%(job_name)s" not in template:
            template = os.path.join(os.path.dirname(template), "%(job_name)s.pid")
        if template:
            defaults["pidfile"] = template
    return defaults


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
            environ.get(TOKEN, ""),
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
