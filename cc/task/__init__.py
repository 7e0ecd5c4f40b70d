"""Task modules: one-shot jobs that taskexec runs on a host for a remote client.

taskexec starts ``python -m MODULE config.ini MODULE`` (the module's config
section is named like the module; it being there is what allows the task)
and writes ``{"task": <task.send body>, "signature": <base64>}`` to its stdin.
The task reports on its stdout, one JSON object a line, which taskexec turns
into ``task.reply.<id>`` messages::

    {"status": "feedback", "feedback": {...}}
    {"status": "finished"}  or  {"status": "failed"}

A task module defines a :class:`CCTask` subclass and ends with
``if __name__ == "__main__": run_task(MyTask)``.  Its docstring's first line
is what ``cc-task --list`` shows.
"""

import json
import logging
import os
import sys
from typing import IO, Any, Dict, List, Optional, Type

import skytools

__all__ = ["CCTask", "run_task"]


class CCTask:
    """Base of task modules.

    Override :meth:`process_task` (required): do the work, call
    :meth:`send_feedback` as it goes and :meth:`send_finished` at the end.
    An exception, or returning without :meth:`send_finished`, ends the task
    ``failed``.  Every log record is also sent to the client as feedback.
    ``self.cf`` is the module's config section, ``self.task`` the task.
    """

    def __init__(self, task: Dict[str, Any], cf: skytools.Config, out: IO[str]) -> None:
        self.task = task
        self.task_id = str(task.get("task_id", ""))
        self.cf = cf
        self.out = out
        self.finished: Optional[bool] = None
        self.log = logging.getLogger(cf.main_section)

    def process_task(self, task: Dict[str, Any]) -> None:
        raise NotImplementedError

    def send_feedback(self, feedback: Optional[Dict[str, Any]] = None, **fields: Any) -> None:
        """Send a ``feedback`` reply with ``feedback`` (a dict) or keyword fields."""
        data = dict(feedback or {}, **fields)
        self._emit({"status": "feedback", "feedback": data})

    def send_finished(self, ok: bool = True) -> None:
        """End the task ``finished`` (or ``failed``); only the first call counts."""
        if self.finished is None:
            self.finished = ok
            self._emit({"status": "finished" if ok else "failed"})

    def _emit(self, obj: Dict[str, Any]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()


class FeedbackLogHandler(logging.Handler):
    """Sends the task's log records to the client as feedback."""

    def __init__(self, task: CCTask) -> None:
        super().__init__()
        self.task = task

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.task.send_feedback(
                log_level=record.levelname,
                log_msg=record.getMessage(),
                log_time=record.created,
                log_pid=record.process,
                log_line=record.lineno,
                log_function=record.funcName,
                job_name=self.task.cf.main_section,
            )
        except Exception:
            self.handleError(record)


def run_task(cls: Type[CCTask], argv: Optional[List[str]] = None) -> None:
    """Entry point of a task module: ``python -m MODULE config.ini SECTION``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m MODULE config.ini SECTION  (task on stdin)", file=sys.stderr)
        sys.exit(2)
    # stdout carries the protocol: anything else the task prints goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    request = json.load(sys.stdin)
    cf = skytools.Config(args[1], args[0])
    task = cls(request["task"], cf, out)
    logging.getLogger().addHandler(FeedbackLogHandler(task))
    try:
        task.process_task(request["task"])
    except Exception:
        task.log.exception("task %s failed", task.task_id)
    task.send_finished(False)  # no-op if the task already finished
    sys.exit(0 if task.finished else 1)
