"""taskexec: run task modules for remote clients and stream their progress back.

The original's ``cc.daemon.taskrunner`` (an alias module) is the same daemon.
"""

import asyncio
import base64
import collections
import json
import os
import re
import signal
import sys
import time
import uuid
from typing import Any, Deque, Dict, List, Optional

import skytools
from tornado.ioloop import PeriodicCallback

import cc
from cc.daemon import CCDaemon, run_daemon
from cc.jobs.env import without_job_env
from cc.jobs.pipes import read_lines
from cc.message import CCMessage
from cc.msgtypes import TASK_FINAL, TASK_UID_RE, TaskRegisterMessage, TaskReplyMessage
from cc.options import Option
from cc.tick import Ticker

CC_DAEMON = "TaskExec"

MODULE_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)*$")

#: lines of a task's stderr kept for the ``failed`` feedback
TAIL_LINES = 20

#: seconds a stopping taskexec gives its tasks after TERM, before KILL
TASK_STOP_GRACE = 3.0


class TaskRun:
    """One task: its uid (replies go to ``task.reply.<uid>``), the sender's task_id, module,
    process and the last status sent."""

    def __init__(self, uid: str, task_id: Any, module: str) -> None:
        self.uid = uid
        self.task_id = task_id
        self.module = module
        self.status = "starting"
        self.reported: Optional[str] = None  # what the task said at the end
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.stopping = False
        self.ended: Optional[float] = None
        self.stderr_tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)


class TaskExec(CCDaemon):
    """Registers ``local-id`` with the taskrouter and runs the tasks sent to it.

    A task module may run only if the config file has a section named like
    the module (optional ``sudo = user`` there runs it as that user).  Each
    task gets its message on stdin; its replies ``task.reply.<id>`` go back to
    the client: ``starting``, ``launched``, ``feedback``, ``running`` (every
    ``task-heartbeat`` seconds) and one of ``finished``, ``failed`` (with its
    exit status) or ``stopped``.  A task id is run once: a repeated one is
    answered with its current status.  ``task.reregister`` (from a proxy that
    moved to another hub) has it register again at once.

    ::

        [d:taskrunner]
        module = cc.daemon.taskrunner
        # the host name the taskrouter knows this runner by
        #local-id = <[ccserver] hostname>
        #reg-period = 300
        #maint-period = 60
        # seconds a finished task id is remembered (duplicates are not run)
        #task-grace-period = 900
        # seconds between "running" replies (yes = 10, no = none)
        #task-heartbeat = 10
        #max-tasks = 32

        [cc.task.sample]
        #sudo = postgres
    """

    #: what a task module's own section (named like the module) may have
    TASK_OPTIONS = (Option("sudo", "str", None, "run the task as this user (sudo -n -u)"),)
    OPTIONS = (
        Option("local-id", "str", None, "the host name tasks are addressed to (default:"
               " hostname)"),
        Option("reg-period", "seconds", 300, "seconds between registrations"),
        Option("maint-period", "seconds", 60, "seconds between clean-ups"),
        Option("task-grace-period", "seconds", 900, "seconds a finished task is remembered"),
        Option("task-heartbeat", "str", "10", "seconds between task heartbeats; 0 or no: none"),
        Option("max-tasks", "int", 32, "tasks at once, at the most"),
    )  # fmt: skip

    def reload(self) -> None:
        super().reload()
        self.local_id = self.cf.get("local-id", self.hostname)
        self.reg_period = self.cf.getfloat("reg-period", 300)
        self.maint_period = self.cf.getfloat("maint-period", 60)
        self.grace_period = self.cf.getfloat("task-grace-period", 900)
        self.heartbeat = _heartbeat_period(self.cf.get("task-heartbeat", "10"))
        self.max_tasks = self.cf.getint("max-tasks", 32)

    def start_work(self) -> None:
        #: new per process: tells the taskrouter that tasks sent to an earlier one are lost
        self.runner_id = uuid.uuid4().hex
        self.runs: Dict[str, TaskRun] = {}
        self._running: List["asyncio.Future[None]"] = []
        assert self.cc is not None
        self.cc.on_message(self.handle_msg)
        loop = self.io_loop.asyncio_loop
        # on multiples of their periods: they share the wake-up of the keepalive
        self._timers = [
            Ticker(self.reg_period, self._register, loop),
            Ticker(self.maint_period, self._maintain, loop),
        ]
        for timer in self._timers:
            timer.start()
        self._register()

    def _register(self) -> None:
        """Tell the taskrouter this host's name and what it runs (shown by ``cc-task --hosts``)."""
        msg = TaskRegisterMessage(
            host=self.local_id,
            runner_id=self.runner_id,
            version=cc.__version__,
            modules=allowed_modules(self.cf.cf.sections()),
            period=self.reg_period,
        )
        self.publish(msg.to_message())
        self.stats.inc("task.register")

    # -- receiving tasks ----------------------------------------------------------

    def handle_msg(self, msg: CCMessage) -> None:
        if msg.type == "task.reregister":  # a proxy on the way moved to another hub
            self._register()
            return
        parts = msg.type.split(".")
        if parts[:2] != ["task", "send"]:
            self.stats.inc("count.unexpected")
            self.log.warning("unexpected message %s", msg.type)
            return
        body = msg.get_body()  # opened (decrypted, verified) by the daemon's gate
        uid = parts[2] if len(parts) == 3 else ""
        if not TASK_UID_RE.match(uid):
            self.stats.inc("tasks.invalid")
            self.log.error("invalid task type %s: need task.send.<uid>", msg.type[:200])
            return
        known = self.runs.get(uid)
        if known is not None:
            self.stats.inc("tasks.duplicate")
            self.log.info("task %s already known (%s); not run again", uid, known.status)
            if known.status not in TASK_FINAL:  # one final answer per task
                self._reply(known, known.status, duplicate=True)
            return
        module = body.get("task_handler")
        run = TaskRun(uid, body.get("task_id", uid), module if isinstance(module, str) else "")
        self.runs[uid] = run
        refused = self._refusal(run.module)
        if refused:
            self.stats.inc("tasks_failed")
            self.log.warning("task %s refused: %s", uid, refused)
            self._end(run, "failed", rc=-1, msg=refused)
            return
        future = asyncio.ensure_future(self._run(run, body, msg.signature))
        self._running.append(future)
        future.add_done_callback(self._run_finished)

    def _refusal(self, module: str) -> str:
        if not MODULE_RE.match(module):
            return "Invalid task module name %r" % module[:100]
        if not self.cf.cf.has_section(module):
            return "Task module '%s' not configured" % module
        active = sum(1 for r in self.runs.values() if r.ended is None and r.proc is not None)
        if active >= self.max_tasks:
            return "too many tasks running (max-tasks = %d)" % self.max_tasks
        return ""

    # -- running one task ---------------------------------------------------------

    async def _run(self, run: TaskRun, body: Dict[str, Any], signature: bytes) -> None:
        self._reply(run, "starting")
        argv = [sys.executable, "-m", run.module, self.cf.filename, run.module]
        sudo = skytools.Config(run.module, self.cf.filename).get("sudo", "")
        if sudo:
            argv = ["/usr/bin/sudo", "-n", "-u", sudo] + argv
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=without_job_env(os.environ),
            )
        except OSError as ex:
            self.stats.inc("tasks_failed")
            self._end(run, "failed", rc=-1, msg="cannot launch: %s" % ex)
            return
        run.proc = proc
        self.stats.inc("tasks_launched")
        self.log.info("task %s: %s launched, pid %d", run.uid, run.module, proc.pid)
        self._reply(run, "launched", pid=proc.pid)
        heartbeat = None
        if self.heartbeat > 0:
            heartbeat = PeriodicCallback(lambda: self._reply(run, "running"), self.heartbeat * 1000)
            heartbeat.start()
        assert proc.stdin and proc.stdout and proc.stderr
        readers = asyncio.gather(
            read_lines(proc.stdout, lambda line: self._task_output(run, line)),
            read_lines(proc.stderr, run.stderr_tail.append),
        )
        request = {"task": body, "signature": base64.b64encode(signature).decode("ascii")}
        try:
            proc.stdin.write(json.dumps(request).encode("utf8"))
            await proc.stdin.drain()
            proc.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died before reading its task; its exit status tells why
        rc = await proc.wait()
        if heartbeat is not None:
            heartbeat.stop()
        try:
            await asyncio.wait_for(readers, TASK_STOP_GRACE)
        except asyncio.TimeoutError:
            self.log.warning("task %s: output still open after exit", run.uid)
        if run.stopping:
            self._end(run, "stopped", rc=rc)
        elif rc == 0 and run.reported != "failed":
            self.stats.inc("tasks_finished")
            self._end(run, "finished", rc=rc)
        else:
            self.stats.inc("tasks_failed")
            self._end(run, "failed", rc=rc, out="\n".join(run.stderr_tail))

    def _task_output(self, run: TaskRun, line: str) -> None:
        try:
            report = json.loads(line)
            status = report["status"]
        except (ValueError, KeyError, TypeError):
            self._reply(run, "feedback", feedback={"out": line})
            return
        if status in ("finished", "failed"):
            run.reported = status
        elif status == "feedback" and isinstance(report.get("feedback"), dict):
            self._reply(run, "feedback", feedback=report["feedback"])
        else:
            self._reply(run, "feedback", feedback={"out": line})

    def _end(self, run: TaskRun, status: str, **feedback: Any) -> None:
        run.ended = time.monotonic()
        self.log.info("task %s: %s %s", run.uid, status, feedback.get("rc"))
        self._reply(run, status, feedback=feedback)

    def _reply(self, run: TaskRun, status: str, feedback: Any = None, **fields: Any) -> None:
        if status != "feedback":
            run.status = status
        if feedback is not None:
            fields["feedback"] = feedback
        msg = TaskReplyMessage(
            "task.reply." + run.uid,
            task_id=run.task_id,
            status=status,
            handler=run.module,
            **fields,
        )
        self.publish(msg.to_message())

    def _run_finished(self, future: "asyncio.Future[None]") -> None:
        self._running.remove(future)
        if not future.cancelled() and future.exception() is not None:
            self.log.error("task runner failed", exc_info=future.exception())

    def _maintain(self) -> None:
        """Forget finished tasks after task-grace-period."""
        now = time.monotonic()
        for uid, run in list(self.runs.items()):
            if run.ended is not None and now - run.ended > self.grace_period:
                del self.runs[uid]

    # -- stopping ---------------------------------------------------------------------

    def stop_work(self) -> Optional["asyncio.Future[Any]"]:
        for timer in getattr(self, "_timers", []):
            timer.stop()
        tasks = list(getattr(self, "_running", []))
        if not tasks:
            return None
        for run in self.runs.values():
            if run.proc is not None and run.ended is None:
                run.stopping = True
                _signal(run.proc, signal.SIGTERM)
        return asyncio.ensure_future(self._stop_tasks(tasks))

    async def _stop_tasks(self, tasks: List["asyncio.Future[None]"]) -> None:
        _, late = await asyncio.wait(tasks, timeout=TASK_STOP_GRACE)
        if late:
            for run in self.runs.values():
                if run.proc is not None and run.ended is None:
                    _signal(run.proc, signal.SIGKILL)
            _, stuck = await asyncio.wait(late, timeout=1)
            for future in stuck:  # a process that survived SIGKILL is not waited for
                future.cancel()


def allowed_modules(sections: List[str]) -> List[str]:
    """The task modules a config allows: its sections named like a dotted module path.

    (``[ccserver]``, ``[routes]`` and the ``h:``/``d:`` sections are not.)
    """
    return sorted(name for name in sections if "." in name and MODULE_RE.match(name))


def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass


def _heartbeat_period(value: str) -> float:
    """``task-heartbeat``: seconds, or the original's boolean (yes = 10 s)."""
    lowered = value.strip().lower()
    if lowered in ("yes", "true", "on"):
        return 10.0
    if lowered in ("no", "false", "off", ""):
        return 0.0
    return float(value)


if __name__ == "__main__":
    run_daemon(TaskExec)
