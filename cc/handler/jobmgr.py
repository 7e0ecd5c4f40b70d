"""jobmgr: run the local daemons as supervised children of cc-server."""

import asyncio
import configparser
import difflib
import importlib.util
import hashlib
import hmac
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type

import skytools
from skytools.config import ConfigError

from cc.backoff import Backoff
from cc.handler import CCHandler, HandlerConfigError
from cc.jobs.env import JOB_OPTIONS, KEEPALIVE_PERIOD, JobEnv, connectable, job_defaults
from cc.jobs.supervisor import Job, JobSettings
from cc.message import CCMessage
from cc.options import REQUIRED, Option, check_section, section_config
from cc.process import SCRIPT_IGNORED
from cc.ratelog import RateLimitedLog
from cc.security import crypto_context
from cc.tick import Ticker

if TYPE_CHECKING:  # pragma: no cover
    from cc.daemon.base import CCDaemon
    from cc.handler.serverview import ServerView

CC_HANDLER = "JobMgr"


class JobMgr(CCHandler):
    """Launches the daemons listed in ``daemons``, restarts them, answers ``job.config``.

    Each job runs as a direct child in its own process group, with the
    server's config file and its section as arguments (``python -m MODULE``
    with cc-server's own interpreter, or ``script``); its output goes into the
    server log.  A job that exits is restarted after a delay doubling from
    ``restart-delay`` up to ``restart-delay-max`` (with jitter; reset after a
    run of ``watchdog-reset`` seconds); a job whose ``job.keepalive`` messages
    stop for ``keepalive-timeout`` seconds is killed and restarted.  On
    shutdown every job gets TERM, then KILL after ``stop-timeout``, and the
    server waits for them.  A job that exits within ``start-seconds`` of its
    start ``start-retries`` times in a row goes FATAL: it is not restarted
    until the server reloads or restarts.  Route ``job`` here so that
    keepalives arrive.

    On reload (SIGHUP) the jobs are compared one by one, as ``supervisorctl
    update`` does: a job added to ``daemons`` is started, one taken out is
    stopped, one whose section (or the defaults it takes from here) changed
    is restarted once its old process has gone, and the others run on
    untouched but for a SIGHUP: they read their keys, CAs and CRLs again.

    ``job.config`` answers a job its own section only: each job gets a token
    in its environment (``CC_JOB_TOKEN``) and shows it in the request; a
    request without its job's token is refused (``forbidden``), so another
    local peer cannot read a daemon's section.

    ::

        [routes]
        job = h:jobmgr

        [h:jobmgr]
        handler = jobmgr
        daemons = d:infosender, d:taskrunner

        [d:taskrunner]
        module = cc.daemon.taskrunner
        # or: script = /usr/local/bin/mydaemon  (gets: config.ini section)
        #pidfile = ~/pid/%(job_name)s.pid
        #restart-delay = 1          (the original's watchdog-formula-b works too)
        #restart-delay-max = 300    (the original's watchdog-formula-cap works too)
        #watchdog-reset = 3600
        #start-seconds = 1
        #start-retries = 3          (exits within start-seconds in a row before FATAL; 0: never)
        #keepalive-period = 10
        #keepalive-timeout = 30     (default 3 x keepalive-period)
        #kill-grace = 5
        #stop-timeout = 10

    The per-job options may also be set in ``[h:jobmgr]`` as defaults for all jobs.
    """

    CC_ROLES = ("local",)
    OPTIONS = (
        Option("daemons", "list", REQUIRED, "the job sections to run",
               example="d:infosender, d:taskrunner"),
    ) + JOB_OPTIONS  # fmt: skip
    SECTION_LISTS = ("daemons",)
    STOPS_FIRST = True  # its daemons send through this server to the end

    def __init__(self, hname: str, hcf: skytools.Config, server: "ServerView") -> None:
        super().__init__(hname, hcf, server)
        self._ratelog = RateLimitedLog(self.log)
        #: what each job's token is derived from; new with each jobmgr
        self._secret = os.urandom(32)
        self.config_file = hcf.filename
        self.server_cf = section_config(hcf, "ccserver")
        self.server_job_name = self.server_cf.get("job_name")
        self.jobs: Dict[str, Job] = {}
        self.configs: Dict[str, Dict[str, str]] = {}
        #: job name -> done when the process it last had has exited (after a reload stopped it)
        self._exiting: Dict[str, "asyncio.Future[Any]"] = {}
        self._stopping = False
        self._checker: Optional[Ticker] = None
        self._use(self._make_jobs(hcf))
        self.server.add_status_source(self.hname, self.status_lines)
        self.server.add_state_source("jobs", self.job_states)
        for job in self.jobs.values():
            job.start()

    # -- config -------------------------------------------------------------------

    def _job_name(self, section: str) -> str:
        return "%s.%s" % (self.server_job_name, section)

    @classmethod
    def check_config(cls, hcf: skytools.Config, server_cf: skytools.Config) -> List[str]:
        """Every job section: its options, and a module that imports or a script that runs."""
        return [w for section in _job_sections(hcf) for w in read_job(hcf, server_cf, section)[2]]

    def _make_jobs(self, hcf: skytools.Config) -> Dict[str, Tuple[Job, Dict[str, str]]]:
        """The jobs ``hcf`` lists, with their sections' options; checked, none started."""
        return {name: self._make_job(name, hcf) for name in _job_sections(hcf)}

    def _use(self, jobs: Dict[str, Tuple[Job, Dict[str, str]]]) -> None:
        """Make ``jobs`` the supervised set (they are started by the caller)."""
        self.jobs = {name: job for name, (job, _) in jobs.items()}
        self.configs = {name: config for name, (_, config) in jobs.items()}
        self._by_job_name = {self._job_name(n): n for n in self.jobs}
        if self._checker is not None:
            self._checker.stop()
            self._checker = None
        # a hung job is noticed within a quarter of its keepalive-timeout; none: no checks.
        # Whole seconds where it can: the check then shares the wake-up of the 1 s ping.
        timeouts = [job.settings.keepalive_timeout for job in self.jobs.values()]
        if any(t > 0 for t in timeouts):
            period = min(t for t in timeouts if t > 0) / 4
            period = math.floor(period) if period >= 1 else max(0.1, period)
            self._checker = Ticker(period, self._check_jobs, self.io_loop.asyncio_loop)
            self._checker.start()

    def _make_job(self, section: str, hcf: skytools.Config) -> Tuple[Job, Dict[str, str]]:
        cf, command, _ = read_job(hcf, self.server_cf, section)
        config = dict(cf.cf.items(section))

        def opt(name: str, default: float, *aliases: str) -> float:
            for key in (name,) + aliases:
                for source in (cf, hcf):
                    if source.has_option(key):
                        return source.getfloat(key)
            return default

        argv = command + [self.config_file, section] + self.server.verbosity
        keepalive_period = opt("keepalive-period", 10)
        if keepalive_period <= 0:
            raise HandlerConfigError("[%s]: keepalive-period must be positive" % section)
        settings = JobSettings(
            start_seconds=opt("start-seconds", 1),
            stop_timeout=opt("stop-timeout", 10),
            keepalive_timeout=opt("keepalive-timeout", 3 * keepalive_period),
            kill_grace=opt("kill-grace", 5),
            start_retries=int(opt("start-retries", 3)),
        )
        cap = opt("restart-delay-max", 0, "watchdog-formula-cap") or 300
        backoff = Backoff(
            base=opt("restart-delay", 1, "watchdog-formula-b"),
            cap=cap,
            reset_after=opt("watchdog-reset", 3600),
        )
        jobenv = JobEnv(
            section,
            connectable(self.server.endpoint),
            keepalive_period,
            os.getpid(),
            self.server.hostname,
            self._token(section),
        )
        env = dict(os.environ)
        env.update(jobenv.to_environ())
        job = Job(
            section,
            argv,
            env,
            settings,
            backoff,
            self.stats,
            self.log,
            pidfile=self._pidfile(cf, section),
        )
        return job, config

    # -- reload ---------------------------------------------------------------------

    def reconfigure(self, hcf: skytools.Config) -> Optional[Callable[[], None]]:
        jobs = self._make_jobs(hcf)  # a broken section refuses the reload here
        return lambda: self._update(hcf, jobs)

    def _update(self, hcf: skytools.Config, jobs: Dict[str, Tuple[Job, Dict[str, str]]]) -> None:
        """Start added jobs, stop removed ones, restart changed ones, keep the rest."""
        old = self.jobs
        kept, started, restarted = [], [], []
        for name, (job, config) in list(jobs.items()):
            previous = old.get(name)
            if previous is None:
                started.append(job)
            elif _spec(previous, self.configs[name]) == _spec(job, config):
                jobs[name] = (previous, config)
                kept.append(name)
            else:
                restarted.append(job)
        stopped = [job for name, job in old.items() if name not in jobs]
        self.cf = hcf
        self._use(jobs)
        self.log.info(
            "jobs reloaded: %d kept, started %s, restarted %s, stopped %s",
            len(kept),
            _names(started),
            _names(restarted),
            _names(stopped),
        )
        for job in stopped + restarted:
            self._retire(old[job.name])
        for job in started + restarted:
            exiting = self._exiting.get(job.name)
            if exiting is None:
                job.start()
            else:  # never two processes of one job: the new one waits for the old to exit
                exiting.add_done_callback(lambda _f, job=job: self._start_unless_stopping(job))

    def on_sighup(self) -> None:
        """The server reloaded: the daemons running on read their keys, CAs and CRLs again;
        not when the server refused the new config (server and daemons would then
        disagree on CRLs)."""
        if not self.server.reload_ok:
            self.log.warning("reload refused: daemons not sent SIGHUP, they keep their config")
            return
        for job in self.jobs.values():
            job.reload()

    def _retire(self, job: Job) -> None:
        """Stop ``job``; a restart still waiting for its predecessor is simply dropped."""
        if not job.started:
            return  # the predecessor's exit is already in _exiting
        gone = job.stop()
        self._exiting[job.name] = gone
        gone.add_done_callback(lambda _f, name=job.name: self._exited(name, gone))

    def _exited(self, name: str, gone: "asyncio.Future[Any]") -> None:
        if self._exiting.get(name) is gone:
            del self._exiting[name]

    def _start_unless_stopping(self, job: Job) -> None:
        if not self._stopping and self.jobs.get(job.name) is job and not job.started:
            job.start()

    def _pidfile(self, cf: skytools.Config, section: str) -> str:
        """The job's own pidfile; never the server's (a template without %(job_name)s)."""
        path = cf.getfile("pidfile", "")
        if path and os.path.abspath(path) == os.path.abspath(self.server.pidfile):
            path = os.path.join(os.path.dirname(path), self._job_name(section) + ".pid")
        return path

    # -- messages ---------------------------------------------------------------

    def handle_msg(self, msg: CCMessage) -> None:
        body = msg.get_body()
        if msg.type == "job.keepalive":
            self._keepalive(body)
        elif msg.type == "job.config":
            self._config(msg, body)
        else:
            self.stats.inc("jobmgr.unknown")
            self._ratelog.warning("unknown:" + msg.type, "JobMgr: unsupported req %s", msg.type)
            self.reply_error(msg, "unsupported req %s" % msg.type, "unsupported")

    def _find(self, name: Any) -> Optional[str]:
        if not isinstance(name, str):
            return None
        if name in self.jobs:
            return name
        return self._by_job_name.get(name)

    def _keepalive(self, body: Dict[str, Any]) -> None:
        section = self._find(body.get("job_name"))
        pid = body.get("pid")
        pid = pid if isinstance(pid, int) else None
        if section is None or not self.jobs[section].keepalive(pid):
            self.stats.inc("jobmgr.keepalive_unknown")
            self._ratelog.warning(
                "keepalive:%s" % body.get("job_name"),
                "keepalive from unknown job %r (pid %r)",
                body.get("job_name"),
                pid,
            )
            return
        self.stats.inc("jobmgr.keepalive")

    def _config(self, msg: CCMessage, body: Dict[str, Any]) -> None:
        name = body.get("job_name")
        if not name:
            self.reply_error(msg, "Missing job_name", "bad-request")
            return
        section = self._find(name)
        if section is None:
            self.reply_error(msg, "Unknown job_name %s" % str(name)[:200], "unknown-job")
            return
        token = body.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token, self._token(section)):
            self.stats.inc("jobmgr.forbidden")
            self._ratelog.warning("forbidden", "job.config for %s without its token: refused",
                                  section)  # fmt: skip
            self.reply_error(msg, "job.config answers a job its own section only", "forbidden")
            return
        self.stats.inc("jobmgr.config")
        job = self.jobs[section]
        self.reply(
            msg,
            "job.config",
            job_name=self._job_name(section),
            config=self.configs[section],
            cc_socket=connectable(self.server.endpoint),
            keepalive_period=float(job.env[KEEPALIVE_PERIOD]),
        )

    def _token(self, section: str) -> str:
        """The token of the job of ``section`` (the same across reloads of this jobmgr)."""
        return hmac.new(self._secret, section.encode("utf8"), hashlib.sha256).hexdigest()

    # -- supervision --------------------------------------------------------------

    def _check_jobs(self) -> None:
        now = time.monotonic()
        for job in self.jobs.values():
            job.check_hung(now)

    def status_lines(self) -> List[str]:
        """``<job>.<key>: value`` for pid, state, starts, last exit and keepalive age."""
        lines = []
        for name, job in self.jobs.items():
            lines.extend("%s.%s: %s" % (name, k, v) for k, v in job.status().items())
        return lines

    def job_states(self) -> Dict[str, Dict[str, Any]]:
        """Each job's state and restarts, for ``pub.state`` (the fleet page shows them)."""
        return {
            name: {"state": job.state.name, "restarts": max(job.starts - 1, 0), "pid": job.pid}
            for name, job in self.jobs.items()
        }

    def stop(self) -> "asyncio.Future[Any]":
        self._stopping = True
        if self._checker is not None:
            self._checker.stop()
        self.server.remove_status_source(self.hname, self.status_lines)
        self.server.remove_state_source("jobs", self.job_states)
        running = [job.stop() for job in self.jobs.values() if job.started]
        return asyncio.gather(*running, *self._exiting.values())


def _job_sections(hcf: skytools.Config) -> List[str]:
    names = hcf.getlist("daemons")
    if not names:
        raise HandlerConfigError("[%s]: daemons lists no job section" % hcf.main_section)
    return names


def read_job(
    hcf: skytools.Config, server_cf: skytools.Config, section: str
) -> Tuple[skytools.Config, List[str], List[str]]:
    """A job's section, checked against what its daemon declares, the command that runs
    it (a module that imports: a short name as ``cc-daemon`` takes it, or a module path;
    or a script that is executable) and the warnings.  Raises :class:`HandlerConfigError`."""
    try:
        cf = section_config(hcf, section, job_defaults(server_cf, section))
    except configparser.NoSectionError:
        raise HandlerConfigError(
            "[%s]: daemons names %s, but there is no section [%s]"
            % (hcf.main_section, section, section)
        ) from None
    try:
        if cf.has_option("module"):
            daemon, command = _module_command(section, cf.get("module"))
            declared = daemon.declared() if daemon is not None else JOB_OPTIONS
            warnings = check_section(cf, declared, SCRIPT_IGNORED, unknown=daemon is not None)
            if daemon is not None:
                crypto_context(cf)  # its keys, CAs and CRLs load (only where cms-* is set)
        elif cf.has_option("script"):
            warnings = check_section(cf, JOB_OPTIONS, unknown=False)
            command = [_script(section, cf.getfile("script"))]
        else:
            raise HandlerConfigError("[%s]: needs module = or script =" % section)
    except HandlerConfigError:
        raise
    except (ConfigError, OSError, ValueError) as ex:
        raise HandlerConfigError("[%s]: %s" % (section, ex)) from None
    return cf, command, warnings


def _module_command(section: str, name: str) -> Tuple[Optional[Type["CCDaemon"]], List[str]]:
    """The daemon class of ``module = name`` (None for a module that is no CCDaemon of
    cc's) and its command line; a module that cannot be found is refused."""
    from cc.daemon.registry import DAEMONS, load_daemon_class  # daemons: only where run

    modname = DAEMONS.get(name, name)
    try:
        found = importlib.util.find_spec(modname) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        known = sorted(DAEMONS) + sorted(set(DAEMONS.values()))
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        raise HandlerConfigError(
            "[%s]: module = %s: no such module%s; known daemons: %s"
            % (section, name, " (did you mean %s?)" % close[0] if close else "",
               ", ".join(sorted(DAEMONS)))
        )  # fmt: skip
    daemon = None
    if modname in DAEMONS.values() or modname.startswith("cc.daemon."):
        try:
            daemon = load_daemon_class(modname)
        except ConfigError as ex:
            raise HandlerConfigError("[%s]: module = %s: %s" % (section, name, ex)) from None
    return daemon, [sys.executable, "-m", modname]


def _script(section: str, path: str) -> str:
    """``script = path``, if it is an executable file."""
    if not os.path.isfile(path):
        raise HandlerConfigError("[%s]: script = %s: no such file" % (section, path))
    if not os.access(path, os.X_OK):
        raise HandlerConfigError("[%s]: script = %s: not executable" % (section, path))
    return path


def _spec(job: Job, config: Dict[str, str]) -> Tuple[Any, ...]:
    """What running a job depends on: a difference means a restart on reload."""
    backoff = job.backoff
    return (
        job.argv,
        job.env[KEEPALIVE_PERIOD],
        job.pidfile,
        vars(job.settings),
        (backoff.base, backoff.cap, backoff.reset_after),
        sorted(config.items()),
    )


def _names(jobs: List[Job]) -> str:
    return ", ".join(job.name for job in jobs) or "none"
