"""taskexec: run task modules for remote clients and stream their progress back.

The original's ``cc.daemon.taskrunner`` (an alias module) is the same daemon.
"""

import asyncio
import base64
import collections
import fnmatch
import json
import os
import re
import signal
import sys
import time
import uuid
from typing import Any, Deque, Dict, List, Optional

import skytools
from skytools.config import ConfigError
from tornado.ioloop import PeriodicCallback

import cc
from cc.audit import AUDIT_OPTIONS, AuditTrail
from cc.daemon import CCDaemon, run_daemon
from cc.jobs.env import without_job_env
from cc.jobs.pipes import read_lines
from cc.message import CCMessage
from cc.msgtypes import (
    TASK_FINAL,
    TASK_UID_RE,
    TaskRegisterMessage,
    TaskReplyMessage,
    TaskUnregisterMessage,
)
from cc.options import Option
from cc.policy import FORBIDDEN, Policy, Signers, signer_brief
from cc.tick import Ticker

CC_DAEMON = "TaskExec"

MODULE_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)*$")

#: lines of a task's stderr kept for the ``failed`` feedback
TAIL_LINES = 20

#: seconds a stopping taskexec gives its tasks after TERM, before KILL
TASK_STOP_GRACE = 3.0

#: a task module's ``max-run-time`` when its section does not say (seconds)
DEFAULT_MAX_RUN_TIME = 3600.0


class TaskRun:
    """One task: its uid (replies go to ``task.reply.<uid>``), the sender's task_id, module,
    process and the last status sent."""

    def __init__(self, uid: str, task_id: Any, module: str, signer: Any) -> None:
        self.uid = uid
        self.task_id = task_id
        self.module = module
        #: the verified signer of the task (None where nothing verifies)
        self.signer = signer
        self.started = time.monotonic()
        self.status = "starting"
        self.reported: Optional[str] = None  # what the task said at the end
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.stopping = False
        #: the max-run-time it was stopped for overrunning, if it was
        self.overdue: Optional[float] = None
        self.ended: Optional[float] = None
        self.stderr_tail: Deque[str] = collections.deque(maxlen=TAIL_LINES)


class TaskExec(CCDaemon):
    """Registers ``local-id`` with the taskrouter and runs the tasks sent to it.

    A task module may run only if the config file has a section named like
    the module, a dotted module path (optional ``sudo = user`` there runs it
    as that user; ``max-run-time`` seconds, default 3600, after which it is
    stopped and ends ``failed``); the module is looked up on the installed
    path only, never in the working directory (``python -P``, and relative
    ``PYTHONPATH`` entries dropped).  A task runs
    only if its ``task_host`` (a name, pattern or list) names ``local-id``,
    and, with ``task-policy``, if the policy admits its verified signer for
    the module (the requester's: the taskrouter passes tasks on as signed).
    At most ``max-tasks`` run at once, counted from the moment one is taken.
    Each task gets its message on stdin; its replies ``task.reply.<id>`` go
    back to the client: ``starting``, ``launched``, ``feedback``, ``running``
    (every ``task-heartbeat`` seconds) and one of ``finished``, ``failed``
    (with its exit status) or ``stopped``.  A task id is run once: a repeated
    one is answered with its current status.  ``task.stop.<id>`` stops a
    running task if its signer may run the task's module (or is one of
    ``router-signers``, the taskrouter ending a task it failed).  A runner
    that stops says so (``task.unregister``); ``task.reregister`` (from a
    proxy that moved to another hub) has it register again at once.

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
        # section of the signers that may run each task module (needs cms-verify-ca)
        #task-policy =
        # signers that may stop any task (the taskrouter's certificate), see cc.policy
        #router-signers =
        # JSON lines: each task taken, refused, ended (see cc.audit)
        #audit-log =

        [cc.task.sample]
        #sudo = postgres
        #max-run-time = 3600
    """

    #: what a task module's own section (named like the module) may have
    TASK_OPTIONS = (
        Option("sudo", "str", None, "run the task as this user (sudo -n -u)"),
        Option("max-run-time", "seconds", 3600, "seconds a task may run before it is stopped"),
    )  # fmt: skip
    OPTIONS = (
        Option("local-id", "str", None, "the host name tasks are addressed to (default:"
               " hostname)"),
        Option("reg-period", "seconds", 300, "seconds between registrations"),
        Option("maint-period", "seconds", 60, "seconds between clean-ups"),
        Option("task-grace-period", "seconds", 900, "seconds a finished task is remembered"),
        Option("task-heartbeat", "str", "10", "seconds between task heartbeats; 0 or no: none"),
        Option("max-tasks", "int", 32, "tasks at once, at the most"),
        Option("task-policy", "str", None, "section of signers allowed per task module",
               protects=True),
        Option("router-signers", "str", None, "signers that may stop any task (the taskrouter)"),
    ) + AUDIT_OPTIONS  # fmt: skip

    def reload(self) -> None:
        super().reload()
        self.local_id = self.cf.get("local-id", self.hostname)
        self.reg_period = self.cf.getfloat("reg-period", 300)
        self.maint_period = self.cf.getfloat("maint-period", 60)
        self.grace_period = self.cf.getfloat("task-grace-period", 900)
        self.heartbeat = _heartbeat_period(self.cf.get("task-heartbeat", "10"))
        self.max_tasks = self.cf.getint("max-tasks", 32)
        self.task_policy = Policy.from_section(self.cf, "task-policy")
        if self.task_policy is not None and not self.cf.getlist("cms-verify-ca", []):
            raise ConfigError("[%s]: task-policy needs cms-verify-ca" % self.cf.main_section)
        try:
            self.router_signers = Signers(self.cf.get("router-signers", ""))
        except ValueError as ex:
            raise ConfigError("[%s] router-signers: %s" % (self.cf.main_section, ex)) from None

    def reload_process(self) -> None:
        super().reload_process()
        if getattr(self, "audit", None) is not None:
            self.audit.reopen()  # logrotate moved it

    def start_work(self) -> None:
        #: new per process: tells the taskrouter that tasks sent to an earlier one are lost
        self.runner_id = uuid.uuid4().hex
        self.runs: Dict[str, TaskRun] = {}
        self._running: List["asyncio.Future[None]"] = []
        self.audit = AuditTrail.from_config(self.cf, self.stats, self.log)
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
        if parts[:2] == ["task", "stop"]:
            self._stop_request(msg, parts)
            return
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
        task_id = body.get("task_id", uid)
        run = TaskRun(uid, task_id, module if isinstance(module, str) else "", msg.signer)
        refused, code = self._refusal(run, body)
        self.runs[uid] = run  # after the count of running tasks: this one is not yet among them
        if refused:
            self.stats.inc("tasks_failed")
            if code == FORBIDDEN:
                self.stats.inc("tasks.forbidden")
            self.log.warning("task %s refused: %s", uid, refused)
            self._end(run, "failed", rc=-1, msg=refused, code=code)
            return
        self._audit(run, "task.start", "taken")
        future = asyncio.ensure_future(self._run(run, body, msg.signature))
        self._running.append(future)
        future.add_done_callback(self._run_finished)

    def _refusal(self, run: TaskRun, body: Dict[str, Any]) -> "tuple[str, str]":
        """(why the task may not run here, its error code), or ('', '')."""
        module = run.module
        if module not in allowed_modules([module]):
            return "Invalid task module name %r" % module[:100], "bad-task"
        if not self.cf.cf.has_section(module):
            return "Task module '%s' not configured" % module, "not-configured"
        if not names_host(body.get("task_host"), self.local_id):
            return "task is for %s, not %s" % (str(body.get("task_host"))[:200],
                                                self.local_id), "wrong-host"  # fmt: skip
        if self.task_policy is not None:
            refused = self.task_policy.refusal(module, run.signer)
            if refused:
                return refused, FORBIDDEN
        active = sum(1 for r in self.runs.values() if r.ended is None)
        if active >= self.max_tasks:
            return "too many tasks running (max-tasks = %d)" % self.max_tasks, "busy"
        return "", ""

    def _stop_request(self, msg: CCMessage, parts: List[str]) -> None:
        """``task.stop.<uid>``: stop a running task, if the signer may run it (or is the router)."""
        msg.get_body()  # opened (verified) by the daemon's gate
        run = self.runs.get(parts[2] if len(parts) == 3 else "")
        if run is None or run.ended is not None:
            self.stats.inc("tasks.stop_unknown")
            return
        signer = msg.signer
        if self.task_policy is not None and not self.router_signers.admit(signer):
            refused = self.task_policy.refusal(run.module, signer)
            if refused:
                self.stats.inc("tasks.forbidden")
                self.log.warning("task %s: stop refused: %s", run.uid, refused)
                self._audit(run, "task.stop", FORBIDDEN, stopper=signer_brief(signer))
                self._reply(run, "feedback", feedback={"msg": "stop refused: " + refused,
                                                       "code": FORBIDDEN})  # fmt: skip
                return
        self.log.info("task %s: stop requested", run.uid)
        self._audit(run, "task.stop", "stopping", stopper=signer_brief(signer))
        self._stop(run)

    def _stop(self, run: TaskRun) -> None:
        """End ``run`` as ``stopped``: TERM now, KILL after the grace if it is still there."""
        run.stopping = True
        if run.proc is not None and run.proc.returncode is None:
            _signal(run.proc, signal.SIGTERM)
            self.io_loop.call_later(TASK_STOP_GRACE, self._kill_late, run)

    def _kill_late(self, run: TaskRun) -> None:
        if run.ended is None and run.proc is not None and run.proc.returncode is None:
            _signal(run.proc, signal.SIGKILL)

    def _overdue(self, run: TaskRun, limit: float) -> None:
        """A task past its module's ``max-run-time``: stopped, and it ends ``failed``."""
        if run.ended is None and not run.stopping:
            self.stats.inc("tasks.overdue")
            self.log.warning("task %s: ran longer than max-run-time = %g s; stopping it",
                             run.uid, limit)  # fmt: skip
            run.overdue = limit
            self._stop(run)

    def _audit(self, run: TaskRun, event: str, outcome: str, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.record(event, run.signer, uid=run.uid, task=run.module,
                              hosts=[self.local_id], outcome=outcome, **fields)  # fmt: skip

    # -- running one task ---------------------------------------------------------

    async def _run(self, run: TaskRun, body: Dict[str, Any], signature: bytes) -> None:
        self._reply(run, "starting")
        # -P: the module is found on the installed path, never in the working directory
        argv = [sys.executable, "-P", "-m", run.module, self.cf.filename, run.module]
        module_cf = skytools.Config(run.module, self.cf.filename)
        sudo = module_cf.get("sudo", "")
        try:
            max_run_time = module_cf.getfloat("max-run-time", DEFAULT_MAX_RUN_TIME)
        except ValueError as ex:
            self.stats.inc("tasks_failed")
            self._end(run, "failed", rc=-1, msg="[%s] max-run-time: %s" % (run.module, ex))
            return
        if sudo:
            argv = ["/usr/bin/sudo", "-n", "-u", sudo] + argv
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=task_environ(os.environ),
            )
        except OSError as ex:
            self.stats.inc("tasks_failed")
            self._end(run, "failed", rc=-1, msg="cannot launch: %s" % ex)
            return
        run.proc = proc
        self.stats.inc("tasks_launched")
        self.log.info("task %s: %s launched, pid %d", run.uid, run.module, proc.pid)
        self._reply(run, "launched", pid=proc.pid)
        if run.stopping:  # a stop came while it was being launched
            self._stop(run)
        overdue = self.io_loop.call_later(max_run_time, self._overdue, run, max_run_time)
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
        self.io_loop.remove_timeout(overdue)
        if heartbeat is not None:
            heartbeat.stop()
        try:
            await asyncio.wait_for(readers, TASK_STOP_GRACE)
        except asyncio.TimeoutError:
            self.log.warning("task %s: output still open after exit", run.uid)
        if run.overdue is not None:
            self.stats.inc("tasks_failed")
            self._end(run, "failed", rc=rc, msg="ran longer than max-run-time = %g s" % run.overdue)
        elif run.stopping:
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
        outcome = feedback.get("code") or status
        self._audit(run, "task.end", outcome, duration=round(run.ended - run.started, 3),
                    msg=feedback.get("msg"))  # fmt: skip
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
        if hasattr(self, "runner_id"):  # the taskrouter forgets this host now, not in an hour
            self.publish(TaskUnregisterMessage(host=self.local_id,
                                               runner_id=self.runner_id).to_message())  # fmt: skip
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


def task_environ(environ: Dict[str, str]) -> Dict[str, str]:
    """A task's environment: without jobmgr's variables, and without the relative (or empty)
    ``PYTHONPATH`` entries that would let the working directory pick its module."""
    env = without_job_env(environ)
    if "PYTHONPATH" in env:
        paths = [p for p in env["PYTHONPATH"].split(os.pathsep) if os.path.isabs(p)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        if not paths:
            del env["PYTHONPATH"]
    return env


def names_host(task_host: Any, host: str) -> bool:
    """Whether a task's ``task_host`` (a name, a shell pattern, a list of them) names ``host``."""
    names = task_host if isinstance(task_host, list) else [task_host]
    return any(isinstance(name, str) and fnmatch.fnmatchcase(host, name) for name in names)


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
