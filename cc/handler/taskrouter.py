"""taskrouter: route tasks to the hosts that registered, and their replies back."""

import logging
import re
import time
from typing import Any, Dict, List, Tuple

import skytools
from tornado.ioloop import PeriodicCallback

from cc.handler import CCHandler, HandlerConfigError
from cc.message import CCMessage
from cc.ratelog import RateLimitedLog
from cc.taskfanout import FanOut, TargetError, check_fanout, is_fanout, select_hosts

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

    ``task.hosts`` is answered with every registered host, the age of its
    registration and what its runner reported (version, task modules,
    registration period).  A ``task_host`` that is a shell-style pattern or
    a list of names goes to every matching host (see
    :mod:`cc.taskfanout`): the sender gets every host's replies tagged with
    ``host``, then one ``status: summary``.

    ::

        [routes]
        task = h:taskrouter

        [h:taskrouter]
        handler = taskrouter
        #route-lifetime = 3600
        #reply-timeout = 300
        #maint-period = 60
        # a task_host pattern (db-*) or list goes to every matching host, at most this many
        #max-fanout = 1000
        # seconds a fanned-out task waits for a silent host (the task's host_timeout may say)
        #host-timeout = 60
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
        self._init_fleet(hcf)

    def handle_msg(self, msg: CCMessage) -> None:
        parts = msg.type.split(".")
        if msg.type == "task.register":
            self._register(msg)
        elif msg.type == "task.hosts":
            self._list_hosts(msg)
        elif parts[:2] == ["task", "send"]:
            self._send(msg, parts)
        elif parts[:2] == ["task", "reply"]:
            self._reply(msg, parts)
        else:
            self.stats.inc("task.unknown")
            self._ratelog.warning("unknown", "unknown msg: %s", msg.type)
            self.reply_error(msg, "taskrouter cannot handle %s" % msg.type, "unsupported")

    def _register(self, msg: CCMessage) -> None:
        body = self.get_body(msg)
        if body is None:
            return
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
        self._remember_host(host, body)
        self.stats.inc("task.register")

    def _send(self, msg: CCMessage, parts: List[str]) -> None:
        body = self.get_body(msg)
        if body is None:
            return
        if is_fanout(body.get("task_host")):
            self._fan_out(msg, body, parts)
            return
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
        if task_id in self.fanout_subs:
            self._fanout_reply(msg, task_id)
            return
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
        self._stop_fanouts()

    # -- the fleet: which hosts there are, tasks for many of them -----------------------

    def _init_fleet(self, hcf: skytools.Config) -> None:
        self.max_fanout = hcf.getint("max-fanout", 1000)
        if self.max_fanout <= 0:
            raise HandlerConfigError(
                "[%s]: max-fanout = %d: must be a positive number of hosts"
                % (self.hname, self.max_fanout)
            )
        self.host_timeout = hcf.getfloat("host-timeout", 60)
        #: host -> what its runner said about itself at its latest registration
        self.host_info: Dict[str, Dict[str, Any]] = {}
        #: fan-out task uid -> (its progress, route to the sender, its timer)
        self.fanouts: Dict[str, Tuple[FanOut, List[bytes], Any]] = {}
        #: a host's id of a fan-out task -> (task uid, host)
        self.fanout_subs: Dict[str, Tuple[str, str]] = {}

    def _remember_host(self, host: str, body: Dict[str, Any]) -> None:
        """Keep what a runner reports about itself (fields it does not send are left out)."""
        self.host_info[host] = runner_info(body)
        if len(self.host_info) > 2 * len(self.hosts) + 64:  # forget expired hosts, amortized
            self.host_info = {h: i for h, i in self.host_info.items() if h in self.hosts}

    def _list_hosts(self, msg: CCMessage) -> None:
        """Answer ``task.hosts``: every registered host, the age of its registration, its info."""
        hosts = [
            dict(info, host=host, age=round(info["age"], 3))
            for host, info in sorted(self.registrations().items())
        ]
        self.stats.inc("task.hosts")
        self.reply(msg, "task.hosts", hosts=hosts)

    def registrations(self) -> Dict[str, Dict[str, Any]]:
        """host -> ``age`` of its registration and its runner's info (for the fleet page)."""
        now = time.monotonic()
        return {
            host: dict(self.host_info.get(host, {}), age=now - registered)
            for host, (_, registered) in self.hosts.items()
        }

    def _fan_out(self, msg: CCMessage, body: Dict[str, Any], parts: List[str]) -> None:
        """Send one task to every registered host its ``task_host`` pattern or list names."""
        try:
            uid, bound = check_fanout(body, parts, self.max_fanout)
            hosts, unknown = select_hosts(body["task_host"], self.hosts, bound)
            if len(hosts) > bound:
                raise TargetError(
                    "too-many-hosts",
                    "task_host matches %d hosts, more than max-fanout %d" % (len(hosts), bound),
                )
            if uid in self.fanouts:
                raise TargetError("duplicate", "task %s is already being sent out" % uid)
            if len(self.fanout_subs) + len(hosts) > MAX_ROUTES:
                raise TargetError("busy", "too many tasks in flight")
            timeout = _host_timeout(body.get("host_timeout"), self.host_timeout)
        except TargetError as ex:
            self.stats.inc("task.fanout_refused")
            self._ratelog.warning("fanout:" + ex.code, "fan-out %s refused: %s", msg.type, ex.msg)
            self.reply_error(msg, ex.msg, ex.code)
            return
        task_id = body.get("task_id", uid)
        fan = FanOut(uid, task_id, hosts, unknown, timeout, time.monotonic())
        taken = [run.sub_id for run in fan.runs.values() if run.sub_id in self.tasks]
        if taken:  # a single-host task already uses one of the ids: its replies must stay its own
            self.stats.inc("task.fanout_refused")
            self.reply_error(msg, "task id %s is in use; choose another" % taken[0], "duplicate")
            return
        for host, run in fan.runs.items():
            self.fanout_subs[run.sub_id] = (uid, host)
            fields = dict(body, task_id=run.sub_id, task_host=host)
            route = self.hosts[host][0]
            self.server.send(CCMessage.build("task.send." + run.sub_id, fields, route=route))
        self.fanouts[uid] = (fan, msg.route, None)
        self.stats.inc("task.fanout")
        self.stats.inc("task.fanout_hosts", len(hosts))
        self.log.info("task %s: sent to %d hosts (%d unknown)", uid, len(hosts), len(unknown))
        self.reply(
            msg,
            "task.reply." + uid,
            handler=body["task_handler"],
            task_id=task_id,
            status="forwarded",
            hosts=hosts,
            unknown=unknown,
        )
        self._fanout_check(uid)

    def _fanout_reply(self, msg: CCMessage, sub_id: str) -> None:
        """Relay one host's reply to a fan-out task to the sender, tagged with the host."""
        uid, host = self.fanout_subs[sub_id]
        fan, route, _ = self.fanouts[uid]
        body = self.get_body(msg)
        if body is None:
            return
        if not fan.take(host, body.get("status"), time.monotonic()):
            self.stats.inc("task.fanout_late")
            return
        fields = dict(body, task_id=fan.task_id, host=host)
        self.server.send(CCMessage.build("task.reply." + uid, fields, route=route))
        self.stats.inc("task.reply")
        self._fanout_check(uid)

    def _fanout_check(self, uid: str) -> None:
        """Time out silent hosts; send the summary once every host is done, else wait on."""
        fan, route, timer = self.fanouts[uid]
        if timer is not None:
            self.io_loop.remove_timeout(timer)
        silent = fan.expire(time.monotonic())
        if silent:
            self.stats.inc("task.fanout_timeout", len(silent))
        deadline = fan.next_deadline()
        if deadline is not None:
            timer = self.io_loop.call_later(deadline - time.monotonic(), self._fanout_check, uid)
            self.fanouts[uid] = (fan, route, timer)
            return
        del self.fanouts[uid]
        for run in fan.runs.values():
            del self.fanout_subs[run.sub_id]
        summary = fan.summary()
        self.log.info("task %s: done, %s", uid, summary["counts"])
        self.server.send(CCMessage.build("task.reply." + uid, summary, route=route))

    def _stop_fanouts(self) -> None:
        for _, _, timer in self.fanouts.values():
            if timer is not None:
                self.io_loop.remove_timeout(timer)


def runner_info(body: Dict[str, Any]) -> Dict[str, Any]:
    """What a ``task.register`` says about the runner: version, task modules, period."""
    info: Dict[str, Any] = {}
    version = body.get("version")
    if isinstance(version, str):
        info["version"] = version[:64]
    modules = body.get("modules")
    if isinstance(modules, list):
        info["modules"] = [m[:128] for m in modules[:200] if isinstance(m, str)]
    period = body.get("period")
    if isinstance(period, (int, float)) and not isinstance(period, bool) and period > 0:
        info["period"] = float(period)
    return info


def _host_timeout(value: Any, default: float) -> float:
    """A fan-out's ``host_timeout`` (seconds of silence before a host counts as timed out)."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0
    if not 0 < seconds <= 86400:
        raise TargetError("bad-task", "host_timeout must be 0 < seconds <= 86400: %r" % (value,))
    return seconds


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
