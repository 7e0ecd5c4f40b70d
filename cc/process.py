"""The process skeleton that cc-server and every daemon share: loop, signals, stop, reports.

Both are skytools ``BaseScript`` s with ``looping = 0``: :meth:`CCProcess.work`
runs one asyncio loop from start to stop.  SIGINT and SIGTERM stop it
gracefully, SIGHUP reloads where the process can; the counters are logged as
one line and published as ``pub.stats`` each stats period and at the stop, the
state as ``pub.state`` at start and each state period.  A fix to shutdown or
to the stats lands here, once.
"""

import asyncio
import os
import select
import signal
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

import skytools
import zmq
from skytools.config import ConfigError
from tornado.ioloop import IOLoop

import cc
from cc.message import CCMessage
from cc.msgtypes import StateMessage, StatsMessage
from cc.options import Option
from cc.stats import Stats
from cc.tick import Ticker

__all__ = ["CCProcess", "Periodic", "START_ERRORS", "run_process"]

#: what a failed start raises: logged, exit code 1, no traceback (a config or an address)
START_ERRORS = (ConfigError, OSError, ValueError, zmq.ZMQError)

#: skytools ``BaseScript``'s options that cc honours, in [ccserver] and in daemon sections
SCRIPT_OPTIONS = (
    Option("job_name", "str", None, "name in logs, messages and file names (default: the"
           " config file's name without .ini)"),
    Option("logfile", "path", None, "log file, its directory made if missing; without it the"
           " log goes to standard error", example="~/log/%(job_name)s.log"),
    Option("log_size", "int", 10485760, "bytes at which the log file is rotated; 0 leaves"
           " rotation to logrotate"),
    Option("log_count", "int", 3, "rotated log files kept"),
    Option("pidfile", "path", None, "file holding the process id, its directory made if"
           " missing; needed by -d, -r, -s and -k", example="~/pid/%(job_name)s.pid"),
    Option("use_skylog", "int", 0, "1: configure logging from skytools' skylog.ini"),
)  # fmt: skip

#: skytools' looping options and log formats: the original's configs carry them, they
#: mean nothing here, and they are accepted without a word
SCRIPT_IGNORED = (
    "loop_delay", "exception_sleep", "exception_quiet", "exception_grace", "exception_reset",
    "logfmt_console", "logfmt_file", "logfmt_console_verbose", "logfmt_file_verbose",
    "logdatefmt_console", "logdatefmt_file", "logdatefmt_console_verbose",
    "logdatefmt_file_verbose",
)  # fmt: skip

#: seconds ``-d`` waits for the daemonized process to say it started (or why not)
DAEMON_START_TIMEOUT = 120.0

#: a timer besides the stats and the state ones: (callback, period in seconds)
Periodic = Tuple[Callable[[], Any], float]


class CCProcess(skytools.BaseScript):
    """Base of :class:`cc.server.CCServer` and :class:`cc.daemon.base.CCDaemon`.

    Override:

    * :meth:`start_process` (required): runs on the loop; sets up sockets and
      work and calls :meth:`start_reports`; raising one of :data:`START_ERRORS`
      ends the process with exit code 1, logged by :meth:`start_failed`;
    * :meth:`stop_process` (required, async): after SIGINT, SIGTERM or
      :meth:`request_stop` (and after a failed start); bound every wait, e.g.
      with :meth:`wait_bounded`;
    * :meth:`close_process` (optional, async): after the final stats: close
      the sockets;
    * :meth:`reload_process` (with ``sighup_reloads = True``): SIGHUP;
    * :meth:`state` (``pub.state``), :meth:`publish_report` (how ``pub.stats``
      and ``pub.state`` leave), :meth:`write_stats` (each stats period).
    """

    __version__ = cc.__version__
    looping = 0
    #: SIGHUP calls :meth:`reload_process`; without it SIGHUP keeps its default action
    sighup_reloads = False

    def __init__(self, service_name: str, args: Sequence[str]) -> None:
        self.exit_code = 0
        #: with -d: the pipe to the parent, told once whether the start worked
        self._ready_fd: Optional[int] = None
        self.stats = Stats()
        self.io_loop: IOLoop = None  # type: ignore[assignment]  # set in work()
        self._stopping: Optional[asyncio.Event] = None
        self._report_timers: List[Ticker] = []
        self._report_period = 0.0
        super().__init__(service_name, args)

    # -- hooks ---------------------------------------------------------------------------

    def start_process(self) -> None:
        raise NotImplementedError

    async def stop_process(self, running: bool) -> None:
        """Stop the work; ``running`` is False after a failed start (clean up what it made)."""
        raise NotImplementedError

    async def close_process(self) -> None:
        """Release what is left once the final stats are out (sockets, the ZeroMQ context)."""

    def reload_process(self) -> None:
        raise NotImplementedError

    def start_failed(self, ex: Exception) -> None:
        self.log.error("cannot start: %s", ex)

    def publish_report(self, msg: CCMessage) -> None:
        raise NotImplementedError

    def state(self) -> Dict[str, Any]:
        """What ``pub.state`` says; subclasses add their own."""
        return {
            "pid": os.getpid(),
            "started": self.started,
            "version": cc.__version__,
            "config_file": os.path.abspath(self.cf.filename),
        }

    # -- lifecycle -------------------------------------------------------------------------

    def init_optparse(self, parser: Optional[Any] = None) -> Any:
        """skytools' options; -k says what SIGTERM does here: the same graceful stop as -s."""
        p = super().init_optparse(parser)
        p.get_option("-k").help = "stop the program gracefully (send SIGTERM, as -s does)"
        return p

    def reload(self) -> None:
        """skytools' reload, then the directories of ``logfile`` and ``pidfile`` made if
        missing (before logging is set up), or a one-line error naming the option."""
        super().reload()
        if self.options.cmd in ("stop", "kill", "reload"):
            return
        for option in ("logfile", "pidfile"):
            make_parent_dir(option, self.cf.getfile(option, ""))

    def startup(self) -> None:
        """Signals are installed on the loop in :meth:`work`, not here."""
        self.started = time.time()

    def start(self) -> None:
        """skytools' start, with a pidfile in use (or ``-d`` without one) a ConfigError
        that names it, before anything forks."""
        pidfile = self.pidfile
        if self.go_daemon and not pidfile:
            raise ConfigError("-d needs a pidfile: set pidfile in [%s]" % self.cf.main_section)
        if pidfile and os.path.isfile(pidfile):
            pid = read_pid(pidfile)
            if pid and skytools.signal_pidfile(pidfile, 0):
                raise ConfigError("pidfile %s: process %d is running" % (pidfile, pid))
            print("Ignoring stale pidfile %s" % pidfile)
        self.run_func_safely(self._boot_daemon)

    def _boot_daemon(self) -> None:
        """skytools' pidfile and ``-d``, but the parent of ``-d`` waits until the process
        has started (or failed) and exits 0 or 1 saying so."""
        pidfile = self.pidfile
        if self.go_daemon:
            self._ready_fd = daemonize_waiting()
        try:
            if pidfile:
                skytools.write_atomic(pidfile, str(os.getpid()))
            try:
                self.run()
            finally:
                if pidfile:
                    try:
                        os.remove(pidfile)
                    except OSError:
                        pass
        finally:
            self.tell_parent(None)  # nothing said yet: the start failed before the loop

    def tell_parent(self, error: Optional[str]) -> None:
        """With ``-d``: tell the waiting parent, once, that the start worked ('') or why
        not; None says nothing (the parent reports an exit while starting)."""
        fd, self._ready_fd = self._ready_fd, None
        if fd is None:
            return
        text = "" if error is None else (error or "ok") + "\n"
        try:
            os.write(fd, text.encode("utf8", "replace")[:4000])
        except OSError:
            pass
        os.close(fd)

    def work(self) -> None:
        asyncio.run(self._process_loop())

    async def _process_loop(self) -> None:
        self.io_loop = IOLoop.current()
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        # before anything is announced: a signal sent once "listening on" is logged must be ours
        caught = [signal.SIGINT, signal.SIGTERM]
        for sig in caught:
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        if self.sighup_reloads:
            loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
            caught.append(signal.SIGHUP)
        running = False
        try:
            try:
                self.start_process()
            except START_ERRORS as ex:
                self.start_failed(ex)
                self.exit_code = 1
                self.tell_parent("cannot start: %s" % ex)
            else:
                running = True
                self.tell_parent("")
                await self._stopping.wait()
        finally:
            self._stop_reports()
            # signals stay caught: a second TERM must not cut short what is being finished
            await self.stop_process(running)
            if running:
                self.write_stats()
            await self.close_process()
            for sig in caught:
                loop.remove_signal_handler(sig)

    def request_stop(self) -> None:
        """Stop as SIGTERM does (the process's own decision: a crashed task, jobmgr gone)."""
        if self._stopping is not None:
            self._stopping.set()

    def _on_stop_signal(self, sig: int) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            self.log.warning("%s again: already stopping", signal.Signals(sig).name)
            return
        self.log.info("got %s, stopping", signal.Signals(sig).name)
        self._stopping.set()

    def _on_reload_signal(self) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            self.log.warning("SIGHUP ignored: stopping")
            return
        self.io_loop.add_callback(self.reload_process)

    async def wait_bounded(self, pending: Dict[str, Awaitable[Any]], timeout: float) -> None:
        """Wait at most ``timeout`` seconds for the stops in ``pending`` (name -> awaitable);
        failures are logged, the late ones logged and cancelled."""
        if not pending:
            return
        tasks = {asyncio.ensure_future(stop): name for name, stop in pending.items()}
        done, late = await asyncio.wait(tasks, timeout=timeout)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                self.log.error("stopping %s failed", tasks[task], exc_info=task.exception())
        if late:
            names = sorted(tasks[task] for task in late)
            self.log.error("%s did not stop in %gs", ", ".join(names), timeout)
            for task in late:
                task.cancel()

    # -- reports -----------------------------------------------------------------------

    def start_reports(
        self, stats_period: float, state_period: float, others: Sequence[Periodic] = ()
    ) -> None:
        """(Re)start the stats and state timers and ``others``; ``pub.state`` goes out now."""
        self._stop_reports()
        self._report_period = stats_period
        # on multiples of their periods: they come in the wake-ups that the 1 s ping
        # and the daemons' 10 s keepalives make anyway
        loop = self.io_loop.asyncio_loop  # type: ignore[attr-defined]
        self._report_timers = [
            Ticker(stats_period, self.write_stats, loop),
            Ticker(state_period, self.publish_state, loop),
        ]
        self._report_timers.extend(Ticker(seconds, cb, loop) for cb, seconds in others)
        self.io_loop.add_callback(self.publish_state)  # a new process or config: a new state
        for timer in self._report_timers:
            timer.start()

    def _stop_reports(self) -> None:
        for timer in self._report_timers:
            timer.stop()

    def write_stats(self) -> None:
        """End the stats period: log it and publish it (each stats period and at the stop)."""
        self.report_stats(self.stats.end_period())

    def report_stats(self, period: Dict[str, float]) -> None:
        """One line ``{key: value, ...}`` in the log (unless empty) and ``pub.stats``."""
        if period:
            self.log.info(
                "{%s}", ", ".join("%s: %s" % (k, _short(v)) for k, v in sorted(period.items()))
            )
        msg = StatsMessage(
            job_name=self.job_name,
            service_type=self.service_name,
            counters=period,
            totals=self.stats.total,
            period=self._report_period,
        )
        self.publish_report(msg.to_message())

    def publish_state(self) -> None:
        """Send ``pub.state`` now: call it when the state changes (also sent each state period)."""
        state = self.state()
        msg = StateMessage(job_name=self.job_name, service_type=self.service_name, state=state)
        self.publish_report(msg.to_message())


def _short(value: float) -> str:
    """A counter for the stats line: 6 significant digits, not a float's 17."""
    return "%.6g" % value if isinstance(value, float) else str(value)


def make_parent_dir(option: str, path: str) -> None:
    """Make the directory of ``path`` (as the running user) if missing; ConfigError naming
    ``option`` when that cannot be done."""
    directory = os.path.dirname(os.path.abspath(path)) if path else ""
    if not directory or os.path.isdir(directory):
        return
    try:
        os.makedirs(directory, 0o750, exist_ok=True)
    except OSError as ex:
        reason = ex.strerror
        if isinstance(ex, FileExistsError):  # a file where a directory of the path should be
            reason = "%s is a file" % ex.filename
        raise ConfigError("%s = %s: cannot create its directory: %s" % (option, path, reason))


def read_pid(pidfile: str) -> int:
    """The process id in ``pidfile``, 0 when it holds none."""
    try:
        with open(pidfile, encoding="utf8") as f:
            return int(f.readline().strip() or 0)
    except (OSError, ValueError):
        return 0


def daemonize_waiting() -> int:
    """Fork into the background like skytools' ``daemonize``; the parent waits for the
    child's word on the returned pipe and exits 0 ("ok") or 1 (printing why).

    Returns the child's end of the pipe.
    """
    read_end, write_end = os.pipe()
    if os.fork() != 0:
        os.close(write_end)
        os._exit(wait_for_child(read_end))
    os.close(read_end)
    os.setsid()
    fd = os.open("/dev/null", os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(fd, std)
    if fd > 2:
        os.close(fd)
    return write_end


def wait_for_child(read_end: int) -> int:
    """The parent of ``-d``: read the child's word (bounded in time); the exit code."""
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.stderr.write("%s: no word from the background process in %ds; see its log\n"
                             % (os.path.basename(sys.argv[0]), DAEMON_START_TIMEOUT))
            return 1
        ready, _, _ = select.select([read_end], [], [], left)
        chunk = os.read(read_end, 4096) if ready else b""
        if ready and not chunk:
            break
        data += chunk
    text = data.decode("utf8", "replace").strip()
    if text == "ok":
        return 0
    sys.stderr.write("%s: %s\n" % (
        os.path.basename(sys.argv[0]), text or "the background process exited while starting;"
        " see its log"))
    return 1


def run_process(make: Callable[[], CCProcess], prog: str) -> None:
    """The command-line edge of a process: make it, run it, exit with its code.

    A config the constructor refuses is one line on stderr and exit code 1; so is a
    start that fails before the loop (a pidfile in use).  ``--check`` (cc-server) stops
    after the checks, printing the warnings.
    """
    try:
        process = make()
        if getattr(process.options, "check", False):
            for text in getattr(process, "config_warnings", []):
                print("warning: %s" % text)
            print("%s: %s is valid" % (prog, process.cf.filename))
            sys.exit(0)
        process.start()
    except (ConfigError, ValueError) as ex:
        print("%s: %s" % (prog, ex), file=sys.stderr)
        sys.exit(1)
    sys.exit(process.exit_code)
