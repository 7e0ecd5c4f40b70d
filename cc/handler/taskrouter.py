"""taskrouter: route tasks to the hosts that registered, their replies back, and see each end."""

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import skytools
from tornado.ioloop import PeriodicCallback

from cc.audit import AUDIT_OPTIONS, AuditTrail
from cc.handler import CCHandler, HandlerConfigError
from cc.message import CCMessage
from cc.options import Option
from cc.msgtypes import TASK_FINAL, TASK_UID_RE, TaskReplyMessage
from cc.policy import FORBIDDEN, signer_host
from cc.ratelog import RateLimitedLog
from cc.fanouts import FanOuts
from cc.taskfanout import is_fanout

if TYPE_CHECKING:  # pragma: no cover
    from cc.handler.serverview import ServerView

CC_HANDLER = "TaskRouter"

#: hosts and tasks remembered at the most
MAX_ROUTES = 100000
#: senders of one task (resends from elsewhere) that get its replies, at the most
MAX_REQUESTERS = 8

#: JSON scalars: what task_id may be (echoed as sent)
SCALARS = (str, int, float, bool, type(None))


class HostRoute:
    """Where a host's task runner is: the route of its last ``task.register``, and who it is."""

    __slots__ = ("route", "registered", "runner_id", "identity", "period", "displaced")

    def __init__(
        self,
        route: List[bytes],
        registered: float,
        runner_id: Optional[str],
        identity: Optional[str],
        period: Optional[float],
    ) -> None:
        self.route = route
        self.registered = registered
        #: the runner process that registered (None from runners that do not say)
        self.runner_id = runner_id
        #: fingerprint of the verified signer that registered (None where nothing verifies)
        self.identity = identity
        #: the runner's registration period, if it said
        self.period = period
        #: (route, runner_id) of a live runner this registration took the host from
        self.displaced: Optional[Tuple[List[bytes], str]] = None

    def live(self, now: float, lifetime: float) -> bool:
        """Whether its runner still registers: within two of its periods (else the lifetime)."""
        limit = min(lifetime, 2 * self.period + 1) if self.period else lifetime
        return now - self.registered <= limit


class Task:
    """One task the router forwarded, until its final answer (and a while after, for resends)."""

    __slots__ = ("uid", "task_id", "handler", "host", "runner_id", "route", "requesters",
                 "active", "acked", "final", "ack_timer", "started")  # fmt: skip

    def __init__(self, uid: str, body: Dict[str, Any], host: HostRoute) -> None:
        self.uid = uid
        self.task_id = body.get("task_id", uid)
        self.handler = body["task_handler"]
        self.host = body["task_host"]
        self.runner_id = host.runner_id
        #: where it was sent: where its replies must come from (unless the host moved)
        self.route = host.route
        self.started = time.monotonic()
        self.requesters: List[List[bytes]] = []
        self.active = time.monotonic()
        self.acked = False
        #: the final reply relayed (or made here), once there is one
        self.final: Optional[CCMessage] = None
        self.ack_timer: Any = None

    def add_requester(self, route: List[bytes]) -> None:
        if route not in self.requesters:
            self.requesters = (self.requesters + [route])[-MAX_REQUESTERS:]


class TaskRouter(CCHandler):
    """Keeps host routes from ``task.register``; routes ``task.send.<uid>``, relays replies.

    A task runner registers its ``host`` (re-registration refreshes the route);
    ``task.send.<uid>`` for that ``task_host`` goes there, the sender gets a
    ``task.reply.<uid>`` with status ``forwarded`` and then every
    ``task.reply.<uid>`` from the runner.  The uid is the type's last part;
    ``task_id`` may be any JSON scalar and is echoed as sent (the
    original's testmsg sends ``55``).  An unknown host or a malformed task is
    answered with an ``error``.

    Every forwarded task gets exactly one final answer (``finished``,
    ``failed`` or ``stopped``): the runner's, or ``failed`` from here, with
    the reason in ``feedback.msg``, when

    * the host has not acknowledged it within ``task-ack-timeout`` seconds
      (the task went to a runner that is gone);
    * the host's runner registers anew from another process (it was
      restarted: what it was running is lost);
    * no reply came for ``reply-timeout`` seconds (a runner sends
      ``running`` every ``task-heartbeat``), or the host's route expired.

    A resend of a task (same uid) is not forwarded again: its sender gets
    ``forwarded`` (or the final answer, if there is one) with
    ``duplicate = true`` and then the replies too.  Replies after the final
    one are counted (``task.reply_after_final``) and dropped.  Host routes
    expire ``route-lifetime`` seconds after the last registration; a task is
    remembered ``reply-timeout`` seconds after its end.  A reload takes new
    timeouts in place; a stopping router answers the open tasks ``failed``.

    Where the server verifies, a registration, a reply or a
    ``task.unregister`` is taken only from a signer whose certificate's CN
    is the host (see :mod:`cc.policy`), and a host held by a live runner
    (one that registered within two of its periods) of another certificate
    is not taken over; where nothing verifies, a reply from the route of
    another registered host is not taken (one from an unknown route is: a
    reconnected link has a new route until the runner registers again).  Refusals are
    counted (``task.forbidden``), logged rate-limited and audited.  A runner
    displaced from a host that registers it again means two live runners
    (two ccs) claim one host name: warned, naming both routes, counted
    (``task.register_conflict``) and shown on the fleet page.  A task is
    passed on as its requester signed it (single host or fan-out), so each
    runner decides on the requester.  ``task.stop.<uid>`` is passed on the
    same way to the task's host(s); a task failed here (ack or reply
    timeout) is stopped on its host by a ``task.stop`` signed by this
    server.  With ``audit-log`` each task sent, refused and ended is one
    JSON line (see :mod:`cc.audit`).

    ``task.hosts`` is answered with every registered host, the age of its
    registration and what its runner reported (version, task modules,
    registration period).  A ``task_host`` that is a shell-style pattern or
    a list of names goes to every matching host (:class:`cc.fanouts.FanOuts`,
    on :mod:`cc.taskfanout`'s policy): the sender gets every host's replies
    tagged with ``host``, then one ``status: summary``.

    ::

        [routes]
        task = h:taskrouter

        [h:taskrouter]
        handler = taskrouter
        #route-lifetime = 3600
        #reply-timeout = 300
        #task-ack-timeout = 15
        #maint-period = 60
        # a task_host pattern (db-*) or list goes to every matching host, at most this many
        #max-fanout = 1000
        # seconds a fanned-out task waits for a silent host (the task's host_timeout may say)
        #host-timeout = 60
        # JSON lines: each task sent, refused, ended
        #audit-log =
    """

    CC_ROLES = ("end-service",)
    OPTIONS = (
        Option("route-lifetime", "seconds", 3600, "seconds a host's route is kept"),
        Option("reply-timeout", "seconds", 300, "seconds a task's client route is kept"),
        Option("task-ack-timeout", "seconds", 15, "seconds a runner has to acknowledge a task"),
        Option("maint-period", "seconds", 60, "seconds between clean-ups"),
        Option("max-fanout", "int", 1000, "hosts one task may go to, at the most"),
        Option("host-timeout", "seconds", 60, "seconds a fan-out waits for a host"),
    ) + AUDIT_OPTIONS  # fmt: skip

    def __init__(self, hname: str, hcf: skytools.Config, server: "ServerView") -> None:
        super().__init__(hname, hcf, server)
        self._ratelog = RateLimitedLog(self.log)
        self.hosts: Dict[str, HostRoute] = {}
        self.tasks: Dict[str, Task] = {}
        self._maint: Optional[PeriodicCallback] = None
        self._init_fleet(hcf)
        self._apply(_timeouts(hname, hcf))
        server.add_registrations(self.registrations)
        if server.verifies and not server.has_policy:
            self.log.warning("no policy: every key the CAs trust may send tasks to every host"
                             " (set [ccserver] policy)")  # fmt: skip

    def reconfigure(self, hcf: skytools.Config) -> Optional[Callable[[], None]]:
        """New timeouts are taken in place: the hosts and the tasks in flight stay."""
        timeouts = _timeouts(self.hname, hcf)
        return lambda: self._apply(timeouts)

    def _apply(self, timeouts: Tuple[float, float, float, float]) -> None:
        self.route_lifetime, self.reply_timeout, self.ack_timeout, maint_period = timeouts
        if self._maint is not None:
            self._maint.stop()
        self._maint = PeriodicCallback(self._expire, maint_period * 1000)
        self._maint.start()

    def handle_msg(self, msg: CCMessage) -> None:
        parts = msg.type.split(".")
        if msg.type == "task.register":
            self._register(msg)
        elif msg.type == "task.unregister":
            self._unregister(msg)
        elif msg.type == "task.hosts":
            self._list_hosts(msg)
        elif parts[:2] == ["task", "send"]:
            self._send(msg, parts)
        elif parts[:2] == ["task", "reply"]:
            self._reply(msg, parts)
        elif parts[:2] == ["task", "stop"]:
            self._stop_task(msg, parts)
        else:
            self.stats.inc("task.unknown")
            self._ratelog.warning("unknown", "unknown msg: %s", msg.type)
            self.reply_error(msg, "taskrouter cannot handle %s" % msg.type, "unsupported")

    def _forbid(self, msg: CCMessage, what: str, reason: str, **audit: Any) -> None:
        """Refuse ``msg`` by identity: counted, logged (rate-limited), audited, answered if
        its sender waits."""
        self.stats.inc("task.forbidden")
        self._ratelog.warning("forbidden:" + what, "%s refused: %s", msg.type, reason)
        self._audit(msg.type, msg.signer, outcome=FORBIDDEN, msg=reason, **audit)
        if not what.startswith(("register", "reply")):  # their senders wait for nothing
            self.reply_error(msg, reason, FORBIDDEN)

    def _audit(self, event: str, signer: Optional[Dict[str, Any]], **fields: Any) -> None:
        if self.audit is not None:
            self.audit.record(event, signer, **fields)

    # -- registration ------------------------------------------------------------

    def _register(self, msg: CCMessage) -> None:
        body = msg.get_body()
        host = body.get("host")
        runner_id = body.get("runner_id")
        runner_id = runner_id if isinstance(runner_id, str) else None
        if not isinstance(host, str) or not host or not msg.route:
            self.stats.inc("task.invalid")
            self._ratelog.warning("register", "bad task.register: host %r", host)
            return
        if not self._may_act_for(msg, host, "register", hosts=[host]):
            return
        signer = msg.signer
        identity = signer.get("fingerprint") if signer else None
        now = time.monotonic()
        previous = self.hosts.get(host)
        if previous is None and len(self.hosts) >= MAX_ROUTES:
            self.stats.inc("task.dropped_register")
            self._ratelog.warning("hostsfull", "too many hosts; %s not registered", host)
            return
        live = previous is not None and previous.live(now, self.route_lifetime)
        if live and identity is not None and previous.identity not in (None, identity):
            reason = "host %s is held by a live task runner of another certificate" % host
            self._forbid(msg, "register-held", reason, hosts=[host])
            return
        entry = HostRoute(msg.route, now, runner_id, identity, runner_info(body).get("period"))
        if previous is None:
            self.log.info("host %s registered", host)
        elif previous.runner_id and runner_id and previous.runner_id != runner_id:
            if previous.displaced is not None and previous.displaced[1] == runner_id:
                self._rival(host, previous.displaced[0], previous.route)
            elif live and previous.route != msg.route:
                entry.displaced = (previous.route, previous.runner_id)
            self.log.info("host %s: task runner restarted", host)
            self._fail_host(host, previous.runner_id, "the task runner on %s restarted" % host)
        elif previous.runner_id == runner_id:
            entry.displaced = previous.displaced
        if previous is not None:
            self.route_hosts.pop(tuple(previous.route), None)
        self.hosts[host] = entry
        self.route_hosts[tuple(msg.route)] = host
        self._remember_host(host, body)
        self.stats.inc("task.register")

    def _rival(self, host: str, route: List[bytes], other: List[bytes]) -> None:
        """A runner displaced from ``host`` registers it again: two live ones claim the name."""
        self.stats.inc("task.register_conflict")
        text = "routes %s and %s" % (_shown_route(route), _shown_route(other))
        self.conflicts[host] = text
        self._ratelog.warning(
            "conflict:" + host,
            "host %s is registered by two live task runners, %s: two ccs use one host name?",
            host,
            text,
        )

    def _unregister(self, msg: CCMessage) -> None:
        """A runner that stops cleanly: its host is forgotten now, its open tasks end."""
        body = msg.get_body()
        host = body.get("host")
        entry = self.hosts.get(host) if isinstance(host, str) else None
        if entry is None or not self._may_act_for(msg, host, "unregister", hosts=[host]):
            return
        if entry.runner_id is None or body.get("runner_id") != entry.runner_id:
            self.stats.inc("task.unregister_stale")  # not the runner that holds the host
            return
        self._drop_host(host, "the task runner on %s stopped" % host)
        self.log.info("host %s: task runner stopped", host)
        self.stats.inc("task.unregister")

    def _drop_host(self, host: str, reason: str) -> None:
        entry = self.hosts.pop(host)
        self.route_hosts.pop(tuple(entry.route), None)
        self.conflicts.pop(host, None)
        self._fail_host(host, None, reason)

    def _may_act_for(self, msg: CCMessage, host: str, what: str, **audit: Any) -> bool:
        """Whether ``msg``'s verified signer may speak for ``host`` (always where nothing
        verifies)."""
        reason = self.server.foreign_host(msg.signer, host)
        if reason:
            self._forbid(msg, what, reason, **audit)
        return not reason

    # -- tasks -------------------------------------------------------------------

    def _send(self, msg: CCMessage, parts: List[str]) -> None:
        body = msg.get_body()
        if is_fanout(body.get("task_host")):
            self.fanouts.send(msg, body, parts, taken=self.tasks)
            return
        problem = _check_task(body, parts)
        if problem:
            self.stats.inc("task.invalid")
            self._ratelog.warning("badtask", "malformed task %s: %s", msg.type, problem)
            self.reply_error(msg, "malformed task: %s" % problem, "bad-task")
            return
        uid = parts[2]
        if uid in self.fanouts:  # its replies would go to the fan-out
            self.stats.inc("task.invalid")
            self.reply_error(msg, "task id %s is in use; choose another" % uid, "duplicate")
            return
        known = self.tasks.get(uid)
        if known is not None:
            self._resent(known, msg)
            return
        host = self.hosts.get(body["task_host"])
        if host is None:
            self.stats.inc("task.no_route")
            self.reply_error(msg, "cannot route to %s" % body["task_host"], "no-route")
            return
        if len(self.tasks) >= MAX_ROUTES:
            self.stats.inc("task.dropped_send")
            self.reply_error(msg, "too many tasks in flight", "busy")
            return
        task = Task(uid, body, host)
        task.add_requester(msg.route)
        self.tasks[uid] = task
        self.server.relay(msg.with_route(host.route).frames)
        self.stats.inc("task.send")
        self._audit("task.send", msg.signer, uid=uid, task=task.handler, hosts=[task.host],
                    outcome="forwarded")  # fmt: skip
        self._tell(task, [msg.route], "forwarded")
        task.ack_timer = self.io_loop.call_later(self.ack_timeout, self._ack_overdue, task)

    def _resent(self, task: Task, msg: CCMessage) -> None:
        """The same task again (a client's resend, testmsg's double send): not run twice."""
        self.stats.inc("task.duplicate")
        task.add_requester(msg.route)
        if task.final is not None:
            self.server.relay(task.final.with_route(msg.route).frames)
        else:
            self._tell(task, [msg.route], "forwarded", duplicate=True)

    def _reply_host(self, msg: CCMessage) -> Optional[str]:
        """The host a reply comes from: the host of its route, if its verified signer (where
        one is) may act for that host; else its signer's own (CN)."""
        host = self.route_hosts.get(tuple(msg.route))
        signer = msg.signer
        if signer is None or (host is not None and not self.server.foreign_host(signer, host)):
            return host
        return signer_host(signer)

    def _reply(self, msg: CCMessage, parts: List[str]) -> None:
        task_id = parts[2] if len(parts) == 3 else ""
        if task_id in self.fanouts:
            host = self._reply_host(msg)
            if host is None or not self.fanouts.sent_to(task_id, host):
                self._forbid(msg, "reply", "reply for fan-out task %s from %s, not one of its"
                             " hosts" % (task_id, _sender(msg)), uid=task_id)  # fmt: skip
            else:
                self.fanouts.reply(msg, task_id, host)
            return
        task = self.tasks.get(task_id)
        if task is None:
            self.stats.inc("task.reply_unknown")
            self._ratelog.log_limited(logging.INFO, "noroute", "cannot route back: %s", msg.type)
            return
        if msg.signer is not None:
            forged = bool(self.server.foreign_host(msg.signer, task.host))
        else:
            sender = self.route_hosts.get(tuple(msg.route))
            forged = msg.route != task.route and sender not in (None, task.host)
        if forged:
            self._forbid(msg, "reply", "reply for task %s of host %s from %s" % (
                task.uid, task.host, _sender(msg)), uid=task.uid, hosts=[task.host])  # fmt: skip
            return
        if task.final is not None:
            self.stats.inc("task.reply_after_final")
            return
        body = msg.get_body()  # a reply's status ends the task: it passed the gate
        self._acknowledged(task)
        task.active = time.monotonic()
        status = body.get("status")
        if status in TASK_FINAL:
            task.final = msg
            self._audit("task.end", msg.signer, uid=task.uid, task=task.handler,
                        hosts=[task.host], outcome=status,
                        duration=round(task.active - task.started, 3))  # fmt: skip
        for route in task.requesters:
            self.server.relay(msg.with_route(route).frames)
        self.stats.inc("task.reply")

    def _stop_task(self, msg: CCMessage, parts: List[str]) -> None:
        """``task.stop.<uid>``: passed on, as the requester signed it, to the task's host(s);
        their runners decide, as for the task itself, and answer ``stopped``."""
        uid = parts[2] if len(parts) == 3 else ""
        task = self.tasks.get(uid)
        if task is not None and task.final is None:
            hosts, task_id = [task.host], task.task_id
        elif uid in self.fanouts:
            hosts, task_id = self.fanouts.pending(uid)
        else:
            self.stats.inc("task.stop_unknown")
            self.reply_error(msg, "no open task %s" % uid[:128], "no-route")
            return
        routes = [self.hosts[host].route for host in hosts if host in self.hosts]
        for route in routes:
            self.server.relay(msg.with_route(route).frames)
        self.stats.inc("task.stop")
        self._audit("task.stop", msg.signer, uid=uid, hosts=hosts, outcome="forwarded")
        self.reply(msg, "task.reply." + uid, task_id=task_id, status="stopping", hosts=hosts)

    # -- tasks that would never end ------------------------------------------------

    def _acknowledged(self, task: Task) -> None:
        task.acked = True
        if task.ack_timer is not None:
            self.io_loop.remove_timeout(task.ack_timer)
            task.ack_timer = None

    def _ack_overdue(self, task: Task) -> None:
        task.ack_timer = None
        if not task.acked and task.final is None and self.tasks.get(task.uid) is task:
            reason = "host %s did not acknowledge the task within %g s (task-ack-timeout)"
            self._fail(task, "ack_timeout", reason % (task.host, self.ack_timeout))

    def _fail_host(self, host: str, runner_id: Optional[str], reason: str) -> None:
        """Fail the open tasks of ``host`` (those sent to ``runner_id``, if given)."""
        for task in list(self.tasks.values()):
            if task.host == host and task.final is None:
                if runner_id is None or task.runner_id == runner_id:
                    self._fail(task, "lost", reason)

    def _fail(self, task: Task, why: str, reason: str) -> None:
        """The final answer, from here, for a task that can get none from its host; the host,
        if it still has a route, is told to stop it (so the answer is true, its slot freed)."""
        self.stats.inc("task.failed.%s" % why)
        self._ratelog.warning("failed:" + why, "task %s: failed: %s", task.uid, reason)
        self._acknowledged(task)
        task.final = self._tell(task, task.requesters, "failed", feedback={"msg": reason})
        self._audit("task.end", None, uid=task.uid, task=task.handler, hosts=[task.host],
                    outcome="failed", msg=reason)  # fmt: skip
        host = self.hosts.get(task.host)
        if host is not None and why != "lost":
            stop = CCMessage.build("task.stop." + task.uid, {"reason": reason}, route=host.route)
            self.server.send(stop)
            self.stats.inc("task.stop_sent")

    def _tell(self, task: Task, routes: List[List[bytes]], status: str, **fields: Any) -> CCMessage:
        """Send ``status`` about ``task`` to ``routes``; the message, sealed, without a route."""
        msg = TaskReplyMessage(
            "task.reply." + task.uid,
            task_id=task.task_id,
            handler=task.handler,
            status=status,
            **fields,
        ).to_message()
        sealed = self.server.seal(msg)
        for route in routes:
            self.server.relay(sealed.with_route(route).frames)
        return sealed

    def _expire(self) -> None:
        now = time.monotonic()
        for host, entry in list(self.hosts.items()):
            if now - entry.registered > self.route_lifetime:
                self.stats.inc("dropped_routes")
                self.log.info("host %s: registration expired", host)
                self._drop_host(host, "the registration of host %s expired" % host)
        for uid, task in list(self.tasks.items()):
            if now - task.active <= self.reply_timeout:
                continue
            if task.final is None:
                reason = "no reply from host %s for %g s (reply-timeout)"
                self._fail(task, "reply_timeout", reason % (task.host, self.reply_timeout))
                task.active = now  # remembered a while longer, for resends
            else:
                del self.tasks[uid]
                self.stats.inc("dropped_tasks")

    def on_sighup(self) -> None:
        """logrotate moved the audit trail: reopen it."""
        if self.audit is not None:
            self.audit.reopen()

    def stop(self) -> None:
        """The tasks still open get their final answer: nobody is left to give it."""
        self.server.remove_registrations(self.registrations)
        if self._maint is not None:
            self._maint.stop()
        for task in list(self.tasks.values()):
            if task.final is None:
                self._fail(task, "stopped", "the taskrouter stopped before the task ended")
        self.fanouts.stop()
        if self.audit is not None:
            self.audit.close()

    # -- the fleet: which hosts there are, tasks for many of them -----------------------

    def _init_fleet(self, hcf: skytools.Config) -> None:
        self.max_fanout = hcf.getint("max-fanout", 1000)
        if self.max_fanout <= 0:
            raise HandlerConfigError(
                "[%s]: max-fanout = %d: must be a positive number of hosts"
                % (self.hname, self.max_fanout)
            )
        #: host -> what its runner said about itself at its latest registration
        self.host_info: Dict[str, Dict[str, Any]] = {}
        #: route of a registration -> its host: which host a reply comes from, unsigned
        self.route_hosts: Dict[Tuple[bytes, ...], str] = {}
        #: host -> the two routes of live runners that both register it
        self.conflicts: Dict[str, str] = {}
        self.audit = AuditTrail.from_config(hcf, self.stats, self.log)
        host_timeout = hcf.getfloat("host-timeout", 60)
        #: the fan-out tasks in flight; the single-host ones are self.tasks
        self.fanouts = FanOuts(self.server, self.hosts, self.stats, self.log, self._audit,
                               self.max_fanout, host_timeout, MAX_ROUTES)  # fmt: skip

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
        hosts = {
            host: dict(self.host_info.get(host, {}), age=now - entry.registered)
            for host, entry in self.hosts.items()
        }
        for host, text in self.conflicts.items():
            if host in hosts:
                hosts[host]["conflict"] = text
        return hosts


def _shown_route(route: List[bytes]) -> str:
    return "/".join(part.hex()[:16] for part in route[:4])


def _sender(msg: CCMessage) -> str:
    """Who sent ``msg``, for a log line: the verified signer, else the route."""
    signer = msg.signer
    return str(signer.get("subject")) if signer else "route " + _shown_route(msg.route)


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
    if isinstance(period, (int, float)) and not isinstance(period, bool) and 0 < period <= 86400:
        info["period"] = float(period)  # bounded first: a 400-digit int does not fit a float
    return info


def _timeouts(hname: str, hcf: skytools.Config) -> Tuple[float, float, float, float]:
    """route-lifetime, reply-timeout, task-ack-timeout, maint-period; all must be positive."""
    try:
        values = (
            hcf.getfloat("route-lifetime", 3600),
            hcf.getfloat("reply-timeout", 300),
            hcf.getfloat("task-ack-timeout", 15),
            hcf.getfloat("maint-period", 60),
        )
    except ValueError as ex:
        raise HandlerConfigError("[%s]: %s" % (hname, ex)) from None
    if min(values) <= 0:
        raise HandlerConfigError("[%s]: timeouts and maint-period must be positive" % hname)
    return values


def _check_task(body: Dict[str, Any], parts: List[str]) -> str:
    """Why a task.send body cannot be routed, or '' if it can."""
    if len(parts) != 3 or not TASK_UID_RE.match(parts[2]):
        return "type must be task.send.<uid>, uid matching %s" % TASK_UID_RE.pattern
    for field in ("task_host", "task_handler"):
        if not isinstance(body.get(field), str) or not body[field]:
            return "%s must be a non-empty string" % field
    if not isinstance(body.get("task_id"), SCALARS):
        return "task_id must be a string, number, boolean or null"
    return ""
