"""One supervised child process: spawn, watch, restart with back-off, stop without orphans.

A :class:`Job` runs its child as a direct child of cc-server in a process
group of its own (``start_new_session``), so every signal goes to the whole
group: whatever the daemon started goes with it.  The child's output is read
on the loop and logged line by line.  Reaping is asyncio's child watcher's;
nothing here blocks or sleeps on the loop.  The decisions (which state next,
how long to wait) are :mod:`cc.jobs.states`'s.
"""

import asyncio
import logging
import os
import signal
import time
from typing import Any, Dict, List, Optional

from cc.backoff import Backoff
from cc.files.atomic import write_atomic
from cc.jobs.pipes import line_level, read_lines
from cc.jobs.states import JobState, check_transition, gives_up, keepalive_overdue
from cc.stats import Stats

__all__ = ["Job", "JobSettings"]


class JobSettings:
    """Timing options of one job (read from its section by jobmgr)."""

    def __init__(
        self,
        start_seconds: float = 1.0,
        stop_timeout: float = 10.0,
        keepalive_timeout: float = 30.0,
        kill_grace: float = 5.0,
        start_retries: int = 3,
    ) -> None:
        self.start_seconds = start_seconds
        self.start_retries = start_retries
        self.stop_timeout = stop_timeout
        self.keepalive_timeout = keepalive_timeout
        self.kill_grace = kill_grace


class Job:
    """A daemon under supervision; :meth:`start` once, :meth:`stop` once."""

    def __init__(
        self,
        name: str,
        argv: List[str],
        env: Dict[str, str],
        settings: JobSettings,
        backoff: Backoff,
        stats: Stats,
        log: logging.Logger,
        pidfile: str = "",
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.settings = settings
        self.backoff = backoff
        self.stats = stats
        self.log = log
        self.pidfile = pidfile
        self.state = JobState.STOPPED
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.pid = 0
        self.starts = 0
        #: runs in a row that ended before RUNNING
        self.failed_starts = 0
        self.last_exit: Optional[int] = None
        self.last_keepalive: Optional[float] = None
        self.started_at = 0.0
        self._kill_handle: Optional[asyncio.TimerHandle] = None
        self._running_handle: Optional[asyncio.TimerHandle] = None
        self._shutdown = asyncio.Event()
        #: set by stop() and reload(): a FATAL job waits for it
        self._wake = asyncio.Event()
        self._task: Optional["asyncio.Task[None]"] = None
        self._warned_no_keepalive = False

    # -- state ---------------------------------------------------------------

    def change_state(self, new: JobState) -> None:
        """The one place a job's state changes; an illegal move is a bug and raises."""
        check_transition(self.state, new)
        self.log.debug("Job %s: %s -> %s", self.name, self.state.name, new.name)
        self.state = new

    def status(self) -> Dict[str, Any]:
        """pid, state, starts, last exit status, keepalive age: for the infofile."""
        age = None
        if self.last_keepalive is not None:
            age = round(time.monotonic() - self.last_keepalive, 1)
        return {
            "state": self.state.name,
            "pid": self.pid or "-",
            "starts": self.starts,
            "last_exit": "-" if self.last_exit is None else self.last_exit,
            "keepalive_age": "-" if age is None else age,
        }

    # -- control ----------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(self._run_done)

    def stop(self) -> "asyncio.Future[Any]":
        """TERM the group, KILL after ``stop-timeout``; the future is done when it is gone."""
        self._shutdown.set()
        self._wake.set()
        if self.state in (JobState.STARTING, JobState.RUNNING):
            self.log.info("Job %s: stopping (pid %d)", self.name, self.pid)
            self._terminate(self.settings.stop_timeout)
        assert self._task is not None
        return asyncio.shield(self._task)

    def reload(self) -> None:
        """HUP a running daemon (itself, not its group: a task it runs must not get it), so it
        reads its keys, CAs and CRLs again.  One still starting reads them as it starts; a
        FATAL one is started again."""
        if self.state == JobState.FATAL:
            self._wake.set()
        elif self.state == JobState.RUNNING and self.proc is not None:
            try:
                os.kill(self.pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    def keepalive(self, pid: Optional[int]) -> bool:
        """A keepalive arrived; False if it came from another process than the current one."""
        if pid is not None and pid != self.pid:
            return False
        self.last_keepalive = time.monotonic()
        if self.state == JobState.STARTING:
            self._became_running()  # STARTING -> RUNNING
        return True

    def check_hung(self, now: float) -> None:
        """Kill a job whose keepalives stopped (called periodically by jobmgr)."""
        if self.state not in (JobState.STARTING, JobState.RUNNING):
            return
        age = keepalive_overdue(self.last_keepalive, now, self.settings.keepalive_timeout)
        if age is not None:
            self.stats.inc("jobs.%s.hung" % self.name)
            self.log.warning(
                "Job %s (pid %d) hung: no keepalive for %.1f s; TERM, KILL in %.1f s",
                self.name,
                self.pid,
                age,
                self.settings.kill_grace,
            )
            self._terminate(self.settings.kill_grace)  # RUNNING -> STOPPING
        elif (
            self.last_keepalive is None
            and not self._warned_no_keepalive
            and now - self.started_at > self.settings.keepalive_timeout
            and "CC_JOB_NAME" in self.env
            and self.argv[1:2] == ["-m"]
        ):
            self._warned_no_keepalive = True
            self.log.warning(
                "Job %s sends no keepalives: is job.keepalive routed to jobmgr (job = h:...)?",
                self.name,
            )

    # -- the supervision loop ----------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.change_state(JobState.STARTING)  # STOPPED/BACKOFF -> STARTING
            self.started_at = time.monotonic()
            self.last_keepalive = None
            status = await self._run_once(loop)
            self.last_exit = status
            ran_for = time.monotonic() - self.started_at
            if self._shutdown.is_set():
                self.change_state(JobState.STOPPED)  # STOPPING -> STOPPED
                self.log.info("Job %s stopped (status %s)", self.name, status)
                return
            self.failed_starts = self.failed_starts + 1 if self.state == JobState.STARTING else 0
            if gives_up(self.failed_starts, self.settings.start_retries):
                if await self._fatal(status):
                    continue  # FATAL -> STARTING
                return
            delay = self.backoff.next_delay(ran_for)
            self.change_state(JobState.BACKOFF)  # STARTING/RUNNING/STOPPING -> BACKOFF
            self.stats.inc("jobs.%s.exits" % self.name)
            self.log.warning(
                "Job %s exited with status %s after %.1f s; restarting in %.1f s%s",
                self.name,
                status,
                ran_for,
                delay,
                " (at the maximum delay)" if self.backoff.at_cap else "",
            )
            try:
                await asyncio.wait_for(self._shutdown.wait(), delay)
            except asyncio.TimeoutError:
                continue  # BACKOFF -> STARTING
            self.change_state(JobState.STOPPED)  # BACKOFF -> STOPPED
            return

    async def _fatal(self, status: Optional[int]) -> bool:
        """Give up until reload (True: start again) or stop (False: stopped)."""
        self.change_state(JobState.FATAL)  # STARTING -> FATAL
        self.stats.inc("jobs.%s.fatal" % self.name)
        self.log.error(
            "Job %s FATAL: exited (status %s) within %g s of its start %d times in a row;"
            " not restarted until reload or restart",
            self.name,
            status,
            self.settings.start_seconds,
            self.failed_starts,
        )
        self._wake.clear()
        await self._wake.wait()
        if self._shutdown.is_set():
            self.change_state(JobState.STOPPED)  # FATAL -> STOPPED
            return False
        self.log.info("Job %s: reload, starting it again", self.name)
        self.failed_starts = 0
        self.backoff.reset()
        return True

    async def _run_once(self, loop: asyncio.AbstractEventLoop) -> Optional[int]:
        """Spawn the child and wait for it (and its group) to be gone; its exit status."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.env,
                start_new_session=True,
            )
        except OSError as ex:
            self.log.error("Job %s: cannot launch %s: %s", self.name, self.argv[0], ex)
            return None
        self.proc, self.pid = proc, proc.pid
        self.starts += 1
        self.stats.inc("jobs.%s.starts" % self.name)
        self.log.info("Job %s started: pid %d: %s", self.name, proc.pid, " ".join(self.argv))
        if self.pidfile:
            await loop.run_in_executor(None, _write_pidfile, self.pidfile, proc.pid)
        self._running_handle = loop.call_later(self.settings.start_seconds, self._became_running)
        assert proc.stdout is not None and proc.stderr is not None
        reader = asyncio.gather(
            read_lines(proc.stdout, lambda line: self._log_line("stdout", logging.INFO, line)),
            read_lines(proc.stderr, lambda line: self._log_line("stderr", logging.WARNING, line)),
        )
        if self._shutdown.is_set():  # stop() came while spawning
            self._terminate(self.settings.stop_timeout)
        status = await proc.wait()
        self._cancel_timers()
        # leftovers of the group (the daemon's own children) die with it: no orphans
        _signal_group(proc.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(reader, self.settings.kill_grace)
        except asyncio.TimeoutError:
            self.log.warning("Job %s: output still open after exit; not read further", self.name)
        if self.pidfile:
            await loop.run_in_executor(None, _remove_pidfile, self.pidfile, proc.pid)
        self.proc, self.pid = None, 0
        return status

    def _became_running(self) -> None:
        if self.state == JobState.STARTING:
            self.change_state(JobState.RUNNING)  # STARTING -> RUNNING

    def _terminate(self, grace: float) -> None:
        """TERM (and CONT, so a stopped process sees it) the group; KILL after ``grace``."""
        if self.state == JobState.STOPPING or self.proc is None:
            return
        self.change_state(JobState.STOPPING)  # STARTING/RUNNING -> STOPPING
        _signal_group(self.pid, signal.SIGTERM)
        _signal_group(self.pid, signal.SIGCONT)
        loop = asyncio.get_running_loop()
        self._kill_handle = loop.call_later(grace, self._kill, grace)

    def _kill(self, grace: float) -> None:
        self._kill_handle = None
        if self.proc is not None and self.proc.returncode is None:
            self.log.warning("Job %s did not stop in %.1f s; KILL", self.name, grace)
            self.stats.inc("jobs.%s.killed" % self.name)
            _signal_group(self.pid, signal.SIGKILL)

    def _cancel_timers(self) -> None:
        for handle in (self._kill_handle, self._running_handle):
            if handle is not None:
                handle.cancel()
        self._kill_handle = self._running_handle = None

    def _log_line(self, stream: str, default: int, line: str) -> None:
        """A line of the job's output, at its own level (a log line's) or ``default``."""
        self.log.log(line_level(line, default), "Job %s %s: %s", self.name, stream, line)

    def _run_done(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("Job %s: supervision failed", self.name, exc_info=task.exception())
            if self.pid:
                _signal_group(self.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:  # the id was reused by a group of another user: not ours
        pass


def _write_pidfile(path: str, pid: int) -> None:
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        write_atomic(path, "%d\n" % pid)
    except OSError as ex:
        logging.getLogger("cc.jobs.supervisor").warning("cannot write pidfile %s: %s", path, ex)


def _remove_pidfile(path: str, pid: int) -> None:
    try:
        with open(path, encoding="ascii") as f:
            if f.read().strip() != str(pid):
                return
        os.remove(path)
    except OSError:
        pass
