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
from cc.stats import Stats
from cc.tick import Ticker

__all__ = ["CCProcess", "Periodic", "START_ERRORS", "run_process"]

#: what a failed start raises: logged, exit code 1, no traceback (a config or an address)
START_ERRORS = (ConfigError, OSError, ValueError, zmq.ZMQError)

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

    def startup(self) -> None:
        """Signals are installed on the loop in :meth:`work`, not here."""
        self.started = time.time()

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
            else:
                running = True
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
            self.log.info("{%s}", ", ".join("%s: %s" % kv for kv in sorted(period.items())))
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


def run_process(make: Callable[[], CCProcess], prog: str) -> None:
    """The command-line edge of a process: make it, run it, exit with its code.

    A config the constructor refuses is one line on stderr and exit code 1.
    """
    try:
        process = make()
    except (ConfigError, ValueError) as ex:
        print("%s: %s" % (prog, ex), file=sys.stderr)
        sys.exit(1)
    process.start()
    sys.exit(process.exit_code)
