"""taskrouter: route tasks to the hosts that registered, and their replies back."""

import logging
import re
import time
from typing import Any, Dict, List, Tuple

import skytools
from tornado.ioloop import PeriodicCallback

from cc.handler import CCHandler
from cc.message import CCMessage
from cc.ratelog import RateLimitedLog

CC_HANDLER = "TaskRouter"

#: task ids (and so the last component of task.send.<id>) the router accepts
TASK_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")

#: hosts and pending tasks remembered at the most
MAX_ROUTES = 100000


class TaskRouter(CCHandler):
    """Keeps host routes from ``task.register``; routes ``task.send.<id>``, relays replies.

    A task runner registers its ``host`` (re-registration refreshes the route);
    ``task.send.<id>`` for that ``task_host`` goes there, the sender gets a
    ``task.reply.<id>`` with status ``forwarded`` and then every
    ``task.reply.<id>`` from the runner.  An unknown host or a malformed task
    is answered with an ``error``.  Host routes expire ``route-lifetime``
    seconds after the last registration, task routes ``reply-timeout``
    seconds after their last reply.

    ::

        [routes]
        task = h:taskrouter

        [h:taskrouter]
        handler = taskrouter
        #route-lifetime = 3600
        #reply-timeout = 300
        #maint-period = 60
    """

    CC_ROLES = ("remote",)

    def __init__(self, hname: str, hcf: skytools.Config, ccscript: Any) -> None:
        super().__init__(hname, hcf, ccscript)
        self.route_lifetime = hcf.getfloat("route-lifetime", 3600)
        self.reply_timeout = hcf.getfloat("reply-timeout", 300)
        self._ratelog = RateLimitedLog(self.log)
        #: host -> (route to its runner, registration time)
        self.hosts: Dict[str, Tuple[List[bytes], float]] = {}
        #: task id -> (route to the sender, last activity)
        self.tasks: Dict[str, Tuple[List[bytes], float]] = {}
        self._maint = PeriodicCallback(self._expire, hcf.getfloat("maint-period", 60) * 1000)
        self._maint.start()

    def reads_body(self, msgtype: str) -> bool:
        """Task replies are relayed to the client unread: it is the client that checks them."""
        return not msgtype.startswith("task.reply.")

    def handle_msg(self, msg: CCMessage) -> None:
        parts = msg.type.split(".")
        if msg.type == "task.register":
            self._register(msg)
        elif parts[:2] == ["task", "send"]:
            self._send(msg, parts)
        elif parts[:2] == ["task", "reply"]:
            self._reply(msg, parts)
        else:
            self.stats.inc("task.unknown")
            self._ratelog.warning("unknown", "unknown msg: %s", msg.type)
            self.reply_error(msg, "taskrouter cannot handle %s" % msg.type, "unsupported")

    def _register(self, msg: CCMessage) -> None:
        body = msg.get_body()
        host = body.get("host")
        if not isinstance(host, str) or not host or not msg.route:
            self.stats.inc("task.invalid")
            self._ratelog.warning("register", "bad task.register: host %r", host)
            return
        if host not in self.hosts and len(self.hosts) >= MAX_ROUTES:
            self.stats.inc("task.dropped_register")
            self._ratelog.warning("hostsfull", "too many hosts; %s not registered", host)
            return
        if host not in self.hosts:
            self.log.info("host %s registered", host)
        self.hosts[host] = (msg.route, time.monotonic())
        self.stats.inc("task.register")

    def _send(self, msg: CCMessage, parts: List[str]) -> None:
        body = msg.get_body()
        problem = _check_task(body, parts)
        if problem:
            self.stats.inc("task.invalid")
            self._ratelog.warning("badtask", "malformed task %s: %s", msg.type, problem)
            self.reply_error(msg, "malformed task: %s" % problem, "bad-task")
            return
        host = body["task_host"]
        target = self.hosts.get(host)
        if target is None:
            self.stats.inc("task.no_route")
            self.reply_error(msg, "cannot route to %s" % host, "no-route")
            return
        task_id = body["task_id"]
        if task_id not in self.tasks and len(self.tasks) >= MAX_ROUTES:
            self.stats.inc("task.dropped_send")
            self.reply_error(msg, "too many tasks in flight", "busy")
            return
        self.tasks[task_id] = (msg.route, time.monotonic())
        self.cclocal.send_cmsg(msg.with_route(target[0]))
        self.stats.inc("task.send")
        self.reply(
            msg,
            "task.reply." + task_id,
            handler=body["task_handler"],
            task_id=task_id,
            status="forwarded",
        )

    def _reply(self, msg: CCMessage, parts: List[str]) -> None:
        task_id = parts[2] if len(parts) == 3 else ""
        entry = self.tasks.get(task_id)
        if entry is None:
            self.stats.inc("task.reply_unknown")
            self._ratelog.log_limited(logging.INFO, "noroute", "cannot route back: %s", msg.type)
            return
        self.tasks[task_id] = (entry[0], time.monotonic())
        self.cclocal.send_cmsg(msg.with_route(entry[0]))
        self.stats.inc("task.reply")

    def _expire(self) -> None:
        now = time.monotonic()
        for host, (_, registered) in list(self.hosts.items()):
            if now - registered > self.route_lifetime:
                del self.hosts[host]
                self.stats.inc("dropped_routes")
                self.log.info("host %s: registration expired", host)
        for task_id, (_, active) in list(self.tasks.items()):
            if now - active > self.reply_timeout:
                del self.tasks[task_id]
                self.stats.inc("dropped_tasks")

    def stop(self) -> None:
        self._maint.stop()


def _check_task(body: Dict[str, Any], parts: List[str]) -> str:
    """Why a task.send body cannot be routed, or '' if it can."""
    for field in ("task_host", "task_handler", "task_id"):
        if not isinstance(body.get(field), str) or not body[field]:
            return "%s must be a non-empty string" % field
    task_id = body["task_id"]
    if not TASK_ID_RE.match(task_id):
        return "task_id must match %s" % TASK_ID_RE.pattern
    if len(parts) != 3 or parts[2] != task_id:
        return "type must be task.send.<task_id>"
    return ""
