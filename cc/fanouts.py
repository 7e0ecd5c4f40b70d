"""The fan-out tasks in flight of one taskrouter: sent, answered host by host, summarized.

:mod:`cc.taskfanout` is the policy (which hosts a target names, what one
:class:`~cc.taskfanout.FanOut` has heard); :class:`FanOuts` drives those on
the loop: it sends a task to every host it names, relays each host's replies
to the sender tagged with ``host``, times out silent hosts and sends the
``status: summary`` last.  The taskrouter composes it with its single-host
tasks and owns the registrations both read; it decides, before calling in,
whether a reply's sender may speak for its host.

Send vs relay: the task goes to each host as its requester signed it
(``relay``: each runner decides on the requester); what goes back to the
requester is made here (``send``: tagged with the host, sealed by this server).
"""

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Container, Dict, List, Mapping, Optional, Tuple

from cc.message import CCMessage
from cc.ratelog import RateLimitedLog
from cc.stats import Stats
from cc.taskfanout import FanOut, TargetError, check_fanout, select_hosts

if TYPE_CHECKING:  # pragma: no cover
    from cc.handler.serverview import ServerView

__all__ = ["FanOuts"]

#: audit(event, signer, **fields): the taskrouter's audit trail
Audit = Callable[..., None]


class FanOuts:
    """The open fan-out tasks, by uid.

    :param server: the server view: ``relay`` to the hosts, ``send`` to the requester,
        ``io_loop`` for the host timeouts
    :param hosts: the taskrouter's registrations, host -> an entry with ``route`` (read only)
    :param stats: where ``task.fanout*`` are counted
    :param audit: the taskrouter's audit trail
    :param max_fanout: hosts one task may go to, at the most (``max-fanout``)
    :param host_timeout: seconds a host may stay silent (``host-timeout``; a task may say)
    :param max_runs: host runs in flight, all fan-outs together, at the most
    :param clock: seconds, monotonic (tests pass their own)
    """

    def __init__(
        self,
        server: "ServerView",
        hosts: Mapping[str, Any],
        stats: Stats,
        log: logging.Logger,
        audit: Audit,
        max_fanout: int,
        host_timeout: float,
        max_runs: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.hosts = hosts
        self.stats = stats
        self.log = log
        self.audit = audit
        self.max_fanout = max_fanout
        self.host_timeout = host_timeout
        self.max_runs = max_runs
        self.clock = clock
        self._ratelog = RateLimitedLog(log)
        #: uid -> (its progress, route to the sender, its timer)
        self._open: Dict[str, Tuple[FanOut, List[bytes], Any]] = {}

    def __contains__(self, uid: object) -> bool:
        return uid in self._open

    def __len__(self) -> int:
        return len(self._open)

    def send(
        self, msg: CCMessage, body: Dict[str, Any], parts: List[str], taken: Container[str]
    ) -> None:
        """Send ``msg`` (``task.send.<uid>``) to every registered host its ``task_host`` names;
        refuse it (``error``) if malformed, too wide, or its uid is open here or ``taken``
        (by a single-host task: its replies must stay its own)."""
        try:
            uid, bound = check_fanout(body, parts, self.max_fanout)
            hosts, unknown = select_hosts(body["task_host"], self.hosts, bound)
            if len(hosts) > bound:
                raise TargetError(
                    "too-many-hosts",
                    "task_host matches %d hosts, more than max-fanout %d" % (len(hosts), bound),
                )
            if uid in self._open:
                raise TargetError("duplicate", "task %s is already being sent out" % uid)
            if uid in taken:
                raise TargetError("duplicate", "task id %s is in use; choose another" % uid)
            in_flight = sum(len(fan.runs) for fan, _, _ in self._open.values())
            if in_flight + len(hosts) > self.max_runs:
                raise TargetError("busy", "too many tasks in flight")
            timeout = host_timeout(body.get("host_timeout"), self.host_timeout)
        except TargetError as ex:
            self.stats.inc("task.fanout_refused")
            self._ratelog.warning("fanout:" + ex.code, "fan-out %s refused: %s", msg.type, ex.msg)
            self.server.send(msg.error_reply(ex.msg, ex.code))
            return
        task_id = body.get("task_id", uid)
        fan = FanOut(uid, task_id, hosts, unknown, timeout, self.clock())
        for host in hosts:  # the task as its requester signed it: each runner decides on it
            self.server.relay(msg.with_route(self.hosts[host].route).frames)
        self._open[uid] = (fan, msg.route, None)
        self.stats.inc("task.fanout")
        self.stats.inc("task.fanout_hosts", len(hosts))
        self.audit("task.send", msg.signer, uid=uid, task=body["task_handler"], hosts=hosts,
                   outcome="forwarded")  # fmt: skip
        self.log.info("task %s: sent to %d hosts (%d unknown)", uid, len(hosts), len(unknown))
        fields = dict(handler=body["task_handler"], task_id=task_id, status="forwarded",
                      hosts=hosts, unknown=unknown)  # fmt: skip
        self.server.send(msg.reply("task.reply." + uid, fields))
        self._check(uid)

    def sent_to(self, uid: str, host: Optional[str]) -> bool:
        """Whether open fan-out ``uid`` went to ``host`` (a reply from elsewhere is forged)."""
        return host in self._open[uid][0].runs

    def reply(self, msg: CCMessage, uid: str, host: str) -> None:
        """Relay ``host``'s reply to fan-out ``uid`` to its sender, tagged with the host; a
        reply after the host's end is counted and dropped."""
        fan, route, _ = self._open[uid]
        body = msg.get_body()
        if not fan.take(host, body.get("status"), self.clock()):
            self.stats.inc("task.fanout_late")
            return
        fields = dict(body, task_id=fan.task_id, host=host)
        self.server.send(CCMessage.build("task.reply." + uid, fields, route=route))
        self.stats.inc("task.reply")
        self._check(uid)

    def pending(self, uid: str) -> Tuple[List[str], Any]:
        """The hosts of fan-out ``uid`` that have not ended, and its ``task_id`` (to stop it)."""
        fan = self._open[uid][0]
        return [host for host, run in fan.runs.items() if run.status is None], fan.task_id

    def stop(self) -> None:
        """The router stops: each open fan-out's sender gets its summary now (hosts not done
        count as ``timeout``), as each single-host task gets its ``failed``."""
        for uid, (fan, route, timer) in self._open.items():
            if timer is not None:
                self.server.io_loop.remove_timeout(timer)
            summary = fan.summary()
            self.log.info("task %s: router stopping, %s", uid, summary["counts"])
            self.server.send(CCMessage.build("task.reply." + uid, summary, route=route))
        self._open.clear()

    def _check(self, uid: str) -> None:
        """Time out silent hosts; send the summary once every host is done, else wait on."""
        fan, route, timer = self._open[uid]
        io_loop = self.server.io_loop
        if timer is not None:
            io_loop.remove_timeout(timer)
        now = self.clock()
        silent = fan.expire(now)
        if silent:
            self.stats.inc("task.fanout_timeout", len(silent))
        deadline = fan.next_deadline()
        if deadline is not None:
            timer = io_loop.call_later(deadline - now, self._check, uid)
            self._open[uid] = (fan, route, timer)
            return
        del self._open[uid]
        summary = fan.summary()
        self.audit("task.end", None, uid=uid, hosts=sorted(fan.runs), outcome="summary",
                   counts=summary["counts"])  # fmt: skip
        self.log.info("task %s: done, %s", uid, summary["counts"])
        self.server.send(CCMessage.build("task.reply." + uid, summary, route=route))


def host_timeout(value: Any, default: float) -> float:
    """A fan-out's ``host_timeout`` (seconds of silence before a host counts as timed out)."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):  # a 400-digit number does not fit a float
        seconds = 0
    if not 0 < seconds <= 86400:
        raise TargetError("bad-task", "host_timeout must be 0 < seconds <= 86400: %r" % (value,))
    return seconds
