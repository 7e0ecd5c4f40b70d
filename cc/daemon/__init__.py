"""Daemons: ordinary cc clients that jobmgr can launch, or that run standalone.

A daemon is started with the server's config file and its own section::

    python -m cc.daemon.infosender /etc/cc/cc.ini d:infosender
    cc-daemon infosender /etc/cc/cc.ini d:infosender

It reads ``[ccserver]`` of that file for the ``cc-socket`` to connect to,
the server's ``job_name`` (its own job name is ``<server job>.<section>``)
and ``pidfile`` template (its own pidfile is the template expanded with its
job name, as the original's: :func:`cc.jobs.env.job_defaults`), then its own
section.  :class:`CCDaemon` gives every daemon the same skeleton: skytools
command line and pidfile, an IOLoop, a connection to the local cc whose
every incoming message passes the section's gate (bounded JSON, verified
where its ``cms-*`` options ask), log records forwarded as ``log.*``
messages, counters logged and published as ``pub.stats`` each
``stats-period``, ``pub.state`` at start and each ``state-period``, and a
clean stop on SIGINT and SIGTERM.  Run by jobmgr
(see :mod:`cc.jobs.env`), a daemon connects to the server's real address, asks
``job.config`` and sends ``job.keepalive`` every ``keepalive-period``; the
pidfile is then jobmgr's to write.

A daemon cannot see its cc's routes, so it publishes ``pub.stats`` and
``pub.state`` unless ``publish-stats = no``; a cc without a route for them
drops them silently (counted in ``count.dropped``, never warned about).

Adding a daemon means adding its module (with ``CC_DAEMON = "ClassName"``)
and one line in :data:`DAEMONS`.
"""

import asyncio
import concurrent.futures
import importlib
import logging
import os
import signal
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Type, TypeVar

import skytools
import zmq
from skytools.config import ConfigError
from tornado.ioloop import IOLoop

import cc
from cc.hostname import configured_hostname
from cc.jobs.env import from_environ, job_defaults
from cc.jobs.link import JobLink
from cc.message import BodyGate, BodyLimits, CCMessage, MessageError, set_hostname
from cc.msgtypes import LogMessage, StateMessage, StatsMessage
from cc.reqstream import CCReqStream
from cc.security import crypto_context
from cc.stats import Stats
from cc.tick import Ticker

__all__ = ["CCDaemon", "DAEMONS", "load_daemon_class", "run_daemon", "main"]

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

#: seconds a stopping daemon waits for queued messages to leave
FLUSH_TIMEOUT = 5.0

T = TypeVar("T")


class CCDaemon(skytools.BaseScript):
    """Base of every daemon.

    Override:

    * :meth:`start_work` (required): runs on the IOLoop once connected; set up
      timers and sockets there;
    * :meth:`stop_work` (optional): release them; may return an awaitable,
      waited for at most ``FLUSH_TIMEOUT`` seconds.

    Helpers: :meth:`publish`, :meth:`query` (async, with a timeout),
    :meth:`run_blocking` (a function on a worker thread, never on the loop),
    :meth:`spawn` (a coroutine for the daemon's lifetime),
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

    __version__ = cc.__version__
    looping = 0

    def __init__(self, service_name: str, args: Sequence[str]) -> None:
        self.stats = Stats()
        self.io_loop: IOLoop = None  # type: ignore[assignment]  # set in work()
        self.zctx: zmq.Context = None  # type: ignore[assignment]
        self.cc: Optional[CCReqStream] = None
        self.exit_code = 0
        self._stopping: Optional[asyncio.Event] = None
        self._tasks: "set[asyncio.Future[Any]]" = set()
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._log_forwarder: Optional["LogForwarder"] = None
        self.jobenv = from_environ()
        self.joblink: Optional[JobLink] = None
        super().__init__(service_name, args)

    # -- config ----------------------------------------------------------------

    def load_config(self) -> skytools.Config:
        """``[ccserver]`` for the socket and job name, then the daemon's own section."""
        if not self.args:
            print("need config file, use --help for help.")
            sys.exit(1)
        conf_file = self.args[0]
        section = self.args[1] if len(self.args) > 1 else self.service_name
        server_cf = skytools.Config("ccserver", conf_file)
        defaults = job_defaults(server_cf, section)
        cf = skytools.Config(section, conf_file, user_defs=defaults, override=self.cf_override)
        server_socket = self.jobenv.socket if self.jobenv else ""
        self.cc_socket = cf.get("cc-socket", server_socket or server_cf.get("cc-socket"))
        self.hostname = (self.jobenv and self.jobenv.hostname) or configured_hostname(server_cf)
        set_hostname(self.hostname)
        return cf

    def reload(self) -> None:
        super().reload()
        self.section = self.cf.main_section
        self.stats_period = self.cf.getfloat("stats-period", 30)
        self.publish_stats = self.cf.getboolean("publish-stats", True)
        self.state_period = self.cf.getfloat("state-period", 300)
        self.zmq_hwm = self.cf.getint("zmq_hwm", 100)
        self.zmq_linger = self.cf.getint("zmq_linger", 500)
        self.body_limits = BodyLimits.from_config(self.cf)
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

    def request_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()

    # -- lifecycle -----------------------------------------------------------------------

    def startup(self) -> None:
        """Signals are installed on the loop in :meth:`work`, not here."""
        self.started = time.time()

    def work(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self.io_loop = IOLoop.current()
        self._stopping = asyncio.Event()
        self.zctx = zmq.Context()
        # on multiples of their periods: they share the wake-up of the keepalive
        stats_timer = Ticker(self.stats_period, self._log_stats, loop)
        state_timer = Ticker(self.state_period, self.publish_state, loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        try:
            crypto = crypto_context(self.cf)
            self.cc = CCReqStream(
                self.cc_socket,
                self.io_loop,
                self.zctx,
                self.stats,
                self.zmq_hwm,
                self.zmq_linger,
                seal=crypto.seal if crypto is not None else None,
                gate=BodyGate(crypto, self.body_limits),
            )
            self._log_forwarder = LogForwarder(self)
            logging.getLogger().addHandler(self._log_forwarder)
            stats_timer.start()
            if self.jobenv is not None:
                self.joblink = JobLink(
                    self.jobenv, self.job_name, self.cc, self.log, self.request_stop
                )
                self.joblink.start()
            state_timer.start()
            self.start_work()
            self.publish_state()
            self.log.info("%s started, connected to %s", self.section, self.cc_socket)
            await self._stopping.wait()
        except (ConfigError, OSError, ValueError, MessageError, zmq.ZMQError) as ex:
            self.log.error("%s cannot run: %s", self.section, ex)
            self.exit_code = 1
        finally:
            stats_timer.stop()
            state_timer.stop()
            await self._stop()

    async def _stop(self) -> None:
        if self.joblink is not None:
            self.joblink.stop()
        try:
            result = self.stop_work()
            if result is not None:
                await asyncio.wait_for(result, FLUSH_TIMEOUT)
        except Exception:
            self.log.exception("%s: stopping failed", self.section)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._log_stats()
        if self._log_forwarder is not None:
            logging.getLogger().removeHandler(self._log_forwarder)
        if self.cc is not None:
            deadline = time.monotonic() + FLUSH_TIMEOUT
            while self.cc.stream.queued and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            self.cc.close()
        self.zctx.destroy(self.zmq_linger)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _on_stop_signal(self, sig: int) -> None:
        self.log.info("got %s, stopping", signal.Signals(sig).name)
        self.request_stop()

    def _log_stats(self) -> None:
        period = self.stats.end_period()
        if period:
            self.log.info("{%s}", ", ".join("%s: %s" % kv for kv in sorted(period.items())))
        if self._can_publish_stats():
            msg = StatsMessage(
                job_name=self.job_name,
                service_type=self.service_name,
                counters=period,
                totals=self.stats.total,
                period=self.stats_period,
            )
            self.publish(msg.to_message())

    # -- pub.state -----------------------------------------------------------------------

    def daemon_state(self) -> Dict[str, Any]:
        """What ``pub.state`` says; a daemon adds its own (jobmgr: its jobs and their states)."""
        return {
            "pid": os.getpid(),
            "started": self.started,
            "version": cc.__version__,
            "config_file": os.path.abspath(self.cf.filename),
            "section": self.section,
        }

    def publish_state(self) -> None:
        """Send ``pub.state`` now: call it when the state changes (also sent each state-period)."""
        if self._can_publish_stats():
            msg = StateMessage(
                job_name=self.job_name, service_type=self.service_name, state=self.daemon_state()
            )
            self.publish(msg.to_message())

    def _can_publish_stats(self) -> bool:
        return self.publish_stats and self.cc is not None and not self.cc.stream.closed


class LogForwarder(logging.Handler):
    """Sends every log record of the daemon to its cc as a ``log.<level>`` message."""

    def __init__(self, daemon: CCDaemon) -> None:
        super().__init__()
        self.daemon = daemon
        self.pid = os.getpid()
        self._busy = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._busy:  # a record logged while sending one (a drop warning) is not sent again
            return
        io_loop = self.daemon.io_loop
        if io_loop is None:
            return
        try:
            msg = self.format_message(record)
        except Exception:
            self.handleError(record)
            return
        if _on_thread_of(io_loop):
            self._send(msg)
        else:
            io_loop.add_callback(self._send, msg)

    def format_message(self, record: logging.LogRecord) -> CCMessage:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        return LogMessage(
            "log." + record.levelname.lower(),
            log_level=record.levelname,
            service_type=self.daemon.service_name,
            job_name=self.daemon.job_name,
            log_msg=text,
            log_time=record.created,
            log_pid=self.pid,
            log_line=record.lineno,
            log_function=record.funcName,
        ).to_message()

    def _send(self, msg: CCMessage) -> None:
        if self.daemon.cc is None or self.daemon.cc.stream.closed:
            return
        self._busy = True
        try:
            self.daemon.publish(msg)
        finally:
            self._busy = False


def _on_thread_of(io_loop: IOLoop) -> bool:
    try:
        return IOLoop.current(instance=False) is io_loop
    except RuntimeError:
        return False


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


def run_daemon(cls: Type[CCDaemon], args: Optional[List[str]] = None) -> None:
    """Entry point shared by every daemon module's ``python -m`` and by ``cc-daemon``."""
    args = sys.argv[1:] if args is None else args
    try:
        daemon = cls(cls.__module__.rsplit(".", 1)[-1], args)
    except ConfigError as ex:
        print("%s: %s" % (cls.__module__, ex), file=sys.stderr)
        sys.exit(1)
    daemon.start()
    sys.exit(daemon.exit_code)


def main(argv: Optional[List[str]] = None) -> None:
    """``cc-daemon MODULE config.ini SECTION [options]``: run any daemon."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: cc-daemon MODULE config.ini SECTION [options]", file=sys.stderr)
        print("daemons: %s (or a module path)" % ", ".join(sorted(DAEMONS)), file=sys.stderr)
        sys.exit(2)
    try:
        cls = load_daemon_class(args[0])
    except ConfigError as ex:
        print("cc-daemon: %s" % ex, file=sys.stderr)
        sys.exit(1)
    run_daemon(cls, args[1:])
