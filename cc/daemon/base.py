"""The base class of every daemon: a cc client on the shared process skeleton.

:class:`CCDaemon` adds to :class:`cc.process.CCProcess` what a daemon needs:
its config from the server's file, a connection to the local cc whose every
incoming message passes the section's gate, log records forwarded as ``log.*``,
the link to jobmgr, and helpers for its work (queries, worker threads, tasks).
"""

import asyncio
import concurrent.futures
import logging
import sys
import time
from configparser import NoSectionError
from typing import Any, Awaitable, Callable, Dict, Optional, Sequence, Tuple, TypeVar

import skytools
import zmq
from skytools.config import ConfigError

from cc.daemon.logforward import LogForwarder, not_forwarded
from cc.hostname import configured_hostname
from cc.jobs.env import JOB_OPTIONS, from_environ, job_defaults
from cc.jobs.link import JobLink
from cc.message import GATE_OPTIONS, BodyGate, CCMessage, set_hostname
from cc.options import Option, check_section, section_config, template
from cc.process import SCRIPT_IGNORED, SCRIPT_OPTIONS, CCProcess
from cc.reqstream import CCReqStream
from cc.security import CMS_DECLARED, crypto_context, replay_cache

__all__ = ["CCDaemon", "FLUSH_TIMEOUT"]

#: seconds a stopping daemon waits for its work to stop, and for queued messages to leave
FLUSH_TIMEOUT = 5.0

T = TypeVar("T")


class CCDaemon(CCProcess):
    """Base of every daemon.

    Override:

    * :meth:`start_work` (required): runs on the IOLoop once connected; set up
      timers and sockets there;
    * :meth:`stop_work` (optional): release them; may return an awaitable,
      waited for at most ``FLUSH_TIMEOUT`` seconds;
    * :meth:`state` (optional): what ``pub.state`` says, e.g. logtail's files.

    SIGHUP reads the section's keys, CAs and CRLs again (an operator revoked
    a signer or renewed a key); its other options take effect at the next
    start (jobmgr restarts a daemon whose section changed, and HUPs the rest
    when the server reloads).

    Helpers: :meth:`publish`, :meth:`query` (async, with a timeout),
    :meth:`run_blocking` (a function on a worker thread, never on the loop),
    :meth:`spawn` (a coroutine for the daemon's lifetime), :meth:`publish_state`,
    :meth:`request_stop`, ``self.stats``, ``self.io_loop``, ``self.log``.

    Config template::

        # the section is the one named on the command line; [ccserver] of the
        # same file gives cc-socket (override it here to use another server)
        # and hostname (run by jobmgr: the server's)
        #cc-socket = tcp://127.0.0.1:22632
        #stats-period = 30
        # pub.stats each stats-period, pub.state at start and each state-period
        #publish-stats = yes
        #state-period = 300
        #zmq_hwm = 100
        #zmq_linger = 500
        # what the daemon receives (replies, tasks) is verified as these say
        #cms-verify-ca =
        #cms-decrypt =
        #cms-time-window = 0
        #cc-max-body-size = 64M
        #cc-max-body-depth = 64
    """

    sighup_reloads = True

    #: what every daemon section takes (a daemon declares its own in ``OPTIONS``)
    COMMON_OPTIONS = (
        Option("cc-socket", "url", None, "the cc to connect to (default: [ccserver]'s)"),
        Option("stats-period", "seconds", 30, "seconds between stats lines and pub.stats"),
        Option("publish-stats", "bool", True, "send pub.stats and pub.state"),
        Option("state-period", "seconds", 300, "seconds between pub.state reports"),
        Option("zmq_hwm", "int", 100, "messages queued to the cc, at the most"),
        Option("zmq_linger", "int", 500, "ms queued messages may take to leave at the stop"),
    )  # fmt: skip
    #: a daemon's own options
    OPTIONS: Tuple[Option, ...] = ()

    @classmethod
    def declared(cls) -> Tuple[Option, ...]:
        """Every option a section of this daemon may have, its jobmgr options included."""
        return (
            SCRIPT_OPTIONS
            + cls.COMMON_OPTIONS
            + CMS_DECLARED
            + GATE_OPTIONS
            + JOB_OPTIONS
            + cls.OPTIONS
        )

    def print_ini(self) -> None:
        """``--ini``: a job section for this daemon from the declarations (a docstring
        would vanish under ``python -OO``); run by a local cc's jobmgr."""
        module = type(self).__module__
        print("[d:%s]\nmodule = %s\n" % (module.rsplit(".", 1)[-1], module))
        print(template(self.OPTIONS))
        print("# every daemon's options\n")
        print(template(self.COMMON_OPTIONS + CMS_DECLARED + GATE_OPTIONS))
        print("# how jobmgr runs it\n")
        print(template(option for option in JOB_OPTIONS if option.name not in ("module", "script")))

    def __init__(self, service_name: str, args: Sequence[str]) -> None:
        self.zctx: zmq.Context = None  # type: ignore[assignment]
        self._work_started = False
        self.cc: Optional[CCReqStream] = None
        self._tasks: "set[asyncio.Future[Any]]" = set()
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._log_forwarder: Optional[LogForwarder] = None
        self.jobenv = from_environ()
        self.joblink: Optional[JobLink] = None
        super().__init__(service_name, args)

    # -- config ----------------------------------------------------------------

    def load_config(self) -> skytools.Config:
        """``[ccserver]`` for the socket and job name, then the daemon's own section."""
        if not self.args:
            print("need config file, use --help for help.")
            sys.exit(1)
        server_cf, cf = self._read_config()
        server_socket = self.jobenv.socket if self.jobenv else ""
        self.cc_socket = cf.get("cc-socket", server_socket or server_cf.get("cc-socket"))
        self.hostname = (self.jobenv and self.jobenv.hostname) or configured_hostname(server_cf)
        set_hostname(self.hostname)
        return cf

    def _read_config(self) -> "tuple[skytools.Config, skytools.Config]":
        """``[ccserver]`` and the daemon's section (with what it inherits from there)."""
        conf_file = self.args[0]
        section = self.args[1] if len(self.args) > 1 else self.service_name
        server_cf = skytools.Config("ccserver", conf_file)
        try:
            cf = section_config(server_cf, section, job_defaults(server_cf, section),
                                self.cf_override)  # fmt: skip
        except NoSectionError:
            raise ConfigError("%s: no section [%s]" % (conf_file, section)) from None
        return server_cf, cf

    def reload(self) -> None:
        super().reload()
        warnings = check_section(self.cf, self.declared(), SCRIPT_IGNORED)
        #: logged at start; run by jobmgr, the server has named them already
        self.config_warnings = warnings if self.jobenv is None else []
        self.section = self.cf.main_section
        self.stats_period = self.cf.getfloat("stats-period", 30)
        self.publish_stats = self.cf.getboolean("publish-stats", True)
        self.state_period = self.cf.getfloat("state-period", 300)
        self.zmq_hwm = self.cf.getint("zmq_hwm", 100)
        self.zmq_linger = self.cf.getint("zmq_linger", 500)
        if self.jobenv is not None:
            self.pidfile = ""  # jobmgr writes it: the daemon would find its own pid "running"

    # -- hooks -----------------------------------------------------------------------

    def start_work(self) -> None:
        raise NotImplementedError

    def stop_work(self) -> Optional[Awaitable[Any]]:
        return None

    # -- helpers -----------------------------------------------------------------------

    def publish(self, msg: CCMessage) -> None:
        """Send a message that expects no reply (bounded queue; drops are counted)."""
        assert self.cc is not None
        self.cc.publish(msg)

    async def query(self, msg: CCMessage, timeout: float = 10.0) -> Optional[CCMessage]:
        """Send a request; the first reply, or None after ``timeout`` seconds."""
        assert self.cc is not None
        future: asyncio.Future = asyncio.get_running_loop().create_future()

        def done(reply: Optional[CCMessage]) -> bool:
            if not future.done():
                future.set_result(reply)
            return False

        self.cc.query(msg, done, timeout)
        return await future

    async def run_blocking(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` on a worker thread (file and process work never blocks the loop)."""
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=2, thread_name_prefix=self.section
            )
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def spawn(self, coro: Awaitable[Any]) -> "asyncio.Future[Any]":
        """Run ``coro`` for the daemon's lifetime: cancelled at stop; a crash is logged and stops
        the daemon (with exit code 1, so that jobmgr restarts it)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: "asyncio.Future[Any]") -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        self.log.error("%s: %r failed", self.section, task, exc_info=task.exception())
        self.exit_code = 1
        self.request_stop()

    # -- lifecycle -----------------------------------------------------------------------

    def start_process(self) -> None:
        self.zctx = zmq.Context()
        self.replay = replay_cache(self.cf)  # kept across reloads: a reload reopens no replay
        crypto = crypto_context(self.cf, self.replay)
        self.cc = CCReqStream(
            self.cc_socket,
            self.io_loop,
            self.zctx,
            self.stats,
            self.zmq_hwm,
            self.zmq_linger,
            seal=crypto.seal if crypto is not None else None,
            gate=BodyGate.from_config(self.cf, crypto),
        )
        self._log_forwarder = LogForwarder(self)
        root = logging.getLogger()
        root.handlers.insert(0, self._log_forwarder)  # first: it marks what it sends
        if self.jobenv is not None:  # jobmgr relays the console: what went as log.* stays out
            for handler in root.handlers[1:]:
                handler.addFilter(not_forwarded)
        if self.jobenv is not None:
            self.joblink = JobLink(self.jobenv, self.job_name, self.cc, self.log, self.request_stop)
            self.joblink.start()
        for text in self.config_warnings:
            self.log.warning("%s", text)
        self._work_started = True
        self.start_work()
        self.start_reports(self.stats_period, self.state_period)
        self.log.info("%s started, connected to %s", self.section, self.cc_socket)

    def start_failed(self, ex: Exception) -> None:
        self.log.error("%s cannot run: %s", self.section, ex)

    async def stop_process(self, running: bool) -> None:
        """Stop the work (also after a failed start: what start_work made), then its tasks."""
        if self.joblink is not None:
            self.joblink.stop()
        try:
            result = self.stop_work() if self._work_started else None
        except Exception:
            self.log.exception("%s: stopping failed", self.section)
            result = None
        if result is not None:
            await self.wait_bounded({self.section: result}, FLUSH_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reload_process(self) -> None:
        """SIGHUP: a new CMS context (keys, CAs, CRLs read again) for what is sent and received;
        a file that does not load keeps the running one."""
        assert self.cc is not None
        try:
            cf = self._read_config()[1]
            crypto = crypto_context(cf, self.replay)
            gate = BodyGate.from_config(cf, crypto)
        except (ConfigError, OSError, ValueError) as ex:
            self.log.error("reload failed, keeping the running config: %s", ex)
            self.stats.inc("count.reload_failed")
            return
        self.cc.seal = crypto.seal if crypto is not None else None
        self.cc.gate = gate
        self.log.info("reloaded: keys, CAs and CRLs read again; other options at the next start")

    async def close_process(self) -> None:
        if self._log_forwarder is not None:
            logging.getLogger().removeHandler(self._log_forwarder)
        if self.cc is not None:
            deadline = time.monotonic() + FLUSH_TIMEOUT
            while self.cc.stream.queued and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.cc.close()
        if self.zctx is not None:
            self.zctx.destroy(self.zmq_linger)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- reports -----------------------------------------------------------------------

    def state(self) -> Dict[str, Any]:
        """What ``pub.state`` says; a daemon adds its own (logtail: its files)."""
        state = super().state()
        state["section"] = self.section
        return state

    def publish_report(self, msg: CCMessage) -> None:
        """A daemon cannot see its cc's routes: it sends unless ``publish-stats = no``."""
        if self.publish_stats and self.cc is not None and not self.cc.stream.closed:
            self.publish(msg)
