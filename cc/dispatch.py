"""The message path: frames from the ROUTER socket to handlers, with a verdict and a tally.

:class:`Dispatcher` is built from four parts it does not own:

* ``routes``, a :class:`~cc.routing.RouteTable` of handlers (swapped on reload);
* ``gate``, the :class:`~cc.message.BodyGate` that opens and verifies bodies;
* ``send``, how a reply made here leaves (the server seals it and writes it to the
  ROUTER socket);
* ``stats``, the :class:`~cc.stats.Stats` its tallies are folded into.

It has no socket and no loop, so tests drive it with lists of frames
(``test/unit/test_dispatch.py``).  The path of one message::

    dispatch(batch) -> receive(frames)   size check, parse, route lookup, gate.judge()
                    -> _route(msg)       gate.open() (or reject()), handler.handle_msg()
                    -> count(result)     ok / crashed / stopping / dropped, per type too

The result of routing a message is one of :data:`RESULTS`; what the gate made
of its body (its *verdict*) is on the message: see doc/architecture.md.
"""

import logging
import time
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

from cc.handler import CCHandler
from cc.message import FORWARDED_UNREAD, MAX_ROUTE_DEPTH, BodyGate, CCMessage, MessageError
from cc.msgtypes import wants_refusal, wants_reply
from cc.ratelog import RateLimitedLog
from cc.routing import RouteTable, has_prefix
from cc.stats import Stats

__all__ = ["Dispatcher", "MAX_PLANS", "MAX_STATS_TYPES", "OTHER_TYPES", "QUIET_NO_ROUTE", "RESULTS"]

#: message types counted one by one (cc-stats 2 and more); types come from the network, so
#: the rest share the key OTHER_TYPES instead of growing the counters without bound
MAX_STATS_TYPES = 1000
OTHER_TYPES = "(other)"

#: routes' plans kept, by type, at the most: unique types (task.send.<id>) would grow it forever
MAX_PLANS = 4096

#: types that daemons publish whether or not their cc routes them: without a
#: route they are dropped and counted, but not warned about every period
QUIET_NO_ROUTE = ("pub.stats", "pub.state")

#: how routing a message ended: every handler took it; one raised; every handler on
#: its route had stopped; no route.  (A refused message is counted as invalid instead.)
RESULTS = ("ok", "crashed", "stopping", "dropped")

Send = Callable[[CCMessage], None]
#: a route's handlers, and whether one of them reads the body
Plan = Tuple[Sequence[CCHandler], bool]
NO_ROUTE: Plan = ((), False)
#: frames, their message (or why they are none), their size, its plan
Received = Tuple[List[bytes], Union[CCMessage, MessageError], int, Plan]


class Dispatcher:
    """Routes messages to handlers through the gate, answers refusals, tallies results.

    The server sets :attr:`routes`, :attr:`gate`, :attr:`max_message_size` and
    :attr:`stats_level` at start and on every reload (:meth:`configure`), and
    adds handlers that finished stopping to :attr:`stopped`.
    """

    def __init__(self, send: Send, stats: Stats, log: Optional[logging.Logger] = None) -> None:
        self.send = send
        self.stats = stats
        self.log = log or logging.getLogger("cc.server")
        self.routes: RouteTable[CCHandler] = RouteTable()
        self.gate = BodyGate()
        self.max_message_size = 64 << 20
        self.stats_level = 1
        #: handlers whose stop() is done on the way out: they are routed nothing
        self.stopped: Set[CCHandler] = set()
        self._ratelog = RateLimitedLog(self.log)
        self._stats_types: Set[str] = set()
        #: messages routed since the stats were last read: (result, type or '') ->
        #: [count, bytes, seconds]; folded into the counters when they are read
        self._tallies: Dict[Tuple[str, str], List[float]] = {}
        #: the routes' plans by type (:meth:`plan`), for the current route table
        self._plans: Dict[str, Plan] = {}
        stats.add_fold(self._fold_tallies)

    def configure(
        self, routes: RouteTable[CCHandler], gate: BodyGate, max_message_size: int, stats_level: int
    ) -> None:
        """Take the parts a (re)load made; messages already routed keep their verdicts."""
        self.routes = routes
        self._plans = {}
        self.gate = gate
        self.max_message_size = max_message_size
        self.stats_level = stats_level

    # -- the path ------------------------------------------------------------------

    def dispatch(self, batch: List[List[bytes]]) -> None:
        """Route the messages one readiness event of the ROUTER socket drained, in order.

        The gate judges every message of the batch first, back to back, then
        each is routed (or refused, with its reply) at its turn: where the
        gate verifies signatures, verifying them back to back costs about a
        third less CPU than verifying each between the handlers' work, which
        pushes the crypto code and key out of the CPU's caches (``cc-bench
        signed``).  One failing message never costs the others theirs.  A
        message's time is its routing's and an equal share of the first pass.
        """
        clock = time.perf_counter
        started = clock()
        received: List[Received] = []
        for frames in batch:
            try:
                received.append(self.receive(frames))
            except Exception:
                self.log.exception("cannot take in a message from %r", frames[:1])
        now = clock()
        share = (now - started) / len(batch) if batch else 0.0
        for frames, msg, size, plan in received:
            then = 0.0
            try:
                if isinstance(msg, MessageError):
                    self.reject_frames(frames, msg, size)
                else:
                    result = self._route(msg, plan, size)
                    if result != "refused":
                        then = clock()
                        self.count(result, msg.type, size, then - now + share)
            except Exception:
                self.log.exception("cannot route a message from %r", frames[:1])
            now = then or clock()  # the next message's time begins here

    def receive(self, frames: List[bytes]) -> Received:
        """``frames``, their message judged by the gate if a handler on its route reads the
        body (a refusal stays on the message, acted on when it is routed), or why they
        are not a message; their size; the route's plan."""
        size = sum(map(len, frames))
        try:
            if size > self.max_message_size:
                raise MessageError(
                    "oversize", "message of %d bytes, limit %d" % (size, self.max_message_size)
                )
            msg = CCMessage(frames)
        except MessageError as ex:
            return frames, ex, size, NO_ROUTE
        plan = self.plan(msg.type)
        if plan[1]:
            self.gate.judge(msg)
        return frames, msg, size, plan

    def plan(self, msgtype: str) -> Plan:
        """The handlers of ``msgtype``'s route and whether one of them reads its body: asked
        once per type of each route table (what a handler reads is set by its config)."""
        plan = self._plans.get(msgtype)
        if plan is None:
            handlers = self.routes.lookup(msgtype)
            plan = (handlers, any(handler.reads_body(msgtype) for handler in handlers))
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[msgtype] = plan
        return plan

    def route(self, msg: CCMessage) -> str:
        """Hand ``msg`` to the handlers of its route, counted; the result."""
        started = time.perf_counter()
        result = self._route(msg, self.plan(msg.type), msg.size)
        if result != "refused":
            self.count(result, msg.type, msg.size, time.perf_counter() - started)
        return result

    def _route(self, msg: CCMessage, plan: Plan, size: int) -> str:
        """Hand ``msg`` to the handlers of ``plan``: a result of :data:`RESULTS` (to count),
        or ``refused`` (counted as invalid)."""
        handlers, reads = plan
        if not handlers:
            if not has_prefix(msg.type, QUIET_NO_ROUTE):
                self._ratelog.warning("noroute:" + msg.type, "dropping msg, no route: %s", msg.type)
            self.answer(msg, "no route for %s" % msg.type, "no-route")
            return "dropped"
        if reads:
            handlers = self._open(msg, handlers)
            if not handlers:  # refused, and nobody passes it on unread
                self.stats.inc("count")
                self.stats.inc("bytes", size)
                return "refused"
        elif msg.verdict is None:
            msg.verdict = FORWARDED_UNREAD
        result = "ok"
        stopped = self.stopped
        skipped = 0
        for handler in handlers:
            if stopped and handler in stopped:
                skipped += 1
            elif not self.deliver(handler, msg):
                result = "crashed"
        if skipped == len(handlers):  # all done stopping: nobody will answer
            self.answer(msg, "server is stopping", "stopping")
            return "stopping"
        if result == "crashed":
            self.answer(msg, "handler crashed", "crashed")
        return result

    def deliver(self, handler: CCHandler, msg: CCMessage) -> bool:
        """``handler.handle_msg(msg)``, a crash contained and logged: whether it went well."""
        try:
            handler.handle_msg(msg)
        except Exception:
            self._ratelog.log_limited(
                logging.ERROR,
                "crash:" + handler.hname,
                "%s crashed, dropping msg: %s",
                handler.hname,
                msg.type,
                exc_info=True,
            )
            return False
        return True

    def forward(self, target: CCHandler, msg: CCMessage) -> str:
        """A handler passes ``msg`` on to ``target`` (``forward-to``): delivered like a routed
        message, a crash contained and answered, unless ``target`` has stopped; the result
        (``ok``, ``crashed`` or ``stopping``) is for the forwarding handler to count."""
        if self.stopped and target in self.stopped:
            self.answer(msg, "server is stopping", "stopping")
            return "stopping"
        if self.deliver(target, msg):
            return "ok"
        self.answer(msg, "handler crashed", "crashed")
        return "crashed"

    def _open(self, msg: CCMessage, handlers: Sequence[CCHandler]) -> Sequence[CCHandler]:
        """The gate: open the body once, before any handler sees it (one of them reads it).

        A refused message is rejected here (counted, logged, answered) and
        goes on only to handlers that pass it on unread (proxies).  A message
        no handler reads is marked so that none can read it (:meth:`_route`).
        """
        try:
            self.gate.open(msg)
        except MessageError as ex:
            self.reject(msg, ex)
            return [handler for handler in handlers if not handler.reads_body(msg.type)]
        return handlers

    # -- refusals and answers -------------------------------------------------------

    def answer(self, msg: CCMessage, text: str, code: str, refused: bool = False) -> None:
        """An ``error`` reply to ``msg`` with ``code``, if its sender waits for one (a
        message the gate ``refused`` is answered where :func:`wants_refusal` says)."""
        waits = wants_refusal if refused else wants_reply
        if waits(msg.type, msg.route):
            self.send(msg.error_reply(text, code))

    def reject_frames(self, frames: List[bytes], ex: MessageError, size: int) -> None:
        """An unparsable frame list: count, log and, if someone waits, answer."""
        try:
            route = frames[: frames.index(b"")]
        except ValueError:
            route = frames[:1]  # the ROUTER's peer identity is always there
        msgtype = None
        if ex.code not in ("bad-frames", "bad-type", "oversize"):
            msgtype = frames[len(route) + 1].decode("ascii", "replace")
        self.stats.inc("count")
        self.stats.inc("bytes", size)
        self._count_invalid(ex, route, size)
        if wants_reply(msgtype, route) and len(route) <= MAX_ROUTE_DEPTH:  # deeper: see §2
            self.send(CCMessage.build("error", {"msg": ex.msg, "code": ex.code}, route=route))

    def reject(self, msg: CCMessage, ex: MessageError) -> None:
        """The gate refused ``msg`` (bad body, too large, hijacked, bad signature): count, log,
        answer where the sender waits."""
        self._count_invalid(ex, msg.route, msg.size)
        self.answer(msg, ex.msg, ex.code, refused=True)

    def _count_invalid(self, ex: MessageError, route: Sequence[bytes], size: int) -> None:
        self.stats.inc("count.invalid")
        self.stats.inc("bytes.invalid", size)
        self.stats.inc("count.invalid." + ex.code)
        self._ratelog.warning(
            "invalid:" + ex.code, "Invalid CC message (%s) from %r: %s", ex.code, route[:1], ex.msg
        )

    # -- tallies ------------------------------------------------------------------

    def count(self, result: str, msgtype: str, size: int, taken: float) -> None:
        """Tally one routed message by result (and by type too with ``cc-stats = 2``)."""
        if self.stats_level > 1:
            if msgtype not in self._stats_types:
                if len(self._stats_types) < MAX_STATS_TYPES:
                    self._stats_types.add(msgtype)
                else:
                    msgtype = OTHER_TYPES
        else:
            msgtype = ""
        key = (result, msgtype)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = [0, 0, 0.0]
        tally[0] += 1
        tally[1] += size
        tally[2] += taken

    def _fold_tallies(self, period: Dict[str, float]) -> None:
        """Stats fold: the tallies as ``count``, ``bytes``, ``seconds``: summed, per result,
        and per result and type (``count.ok.msg.log.info``)."""
        tallies, self._tallies = self._tallies, {}
        get = period.get
        for (result, msgtype), values in tallies.items():
            for prefix, n in zip(("count", "bytes", "seconds"), values):
                keys = [prefix, prefix + "." + result]
                if msgtype:
                    keys.append(keys[1] + ".msg." + msgtype)
                for key in keys:
                    period[key] = get(key, 0) + n
