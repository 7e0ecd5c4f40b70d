"""Link monitoring by ``echo.request`` / ``echo.response`` (proxy ``ping``, echo ``ping-remotes``).

Every ``period`` seconds a ping goes to the remote cc over the given stream;
the remote's echo handler answers with an empty route, so the pong comes back
to this socket, not to a client.  A link without a pong for ``lost_after x
period`` (5 by default) is reported down once, and up again once a pong
arrives; an owner that acts on it (a proxy failing over) passes ``on_change``.

A ping is the one thing an idle agent does every second, so a ping cycle is
kept to little Python work: pings tick on a :class:`~cc.tick.Ticker` (the
other timers of the same period share its wake-up).
A pong passes the owner's gate (verified where the process verifies) before
it is believed.
"""

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from cc.message import BodyGate, CCMessage, MessageError
from cc.msgtypes import EchoRequestMessage
from cc.ratelog import RateLimitedLog
from cc.stats import Stats
from cc.stream import CCStream
from cc.tick import Ticker

__all__ = ["RemotePinger", "LOST_AFTER"]

#: periods without a pong before a link is reported down
LOST_AFTER = 5


class RemotePinger:
    """Pings one remote cc and tracks its answers."""

    def __init__(
        self,
        target: str,
        stream: CCStream,
        stats: Stats,
        log: logging.Logger,
        period: float = 1.0,
        seal: Optional[Callable[[CCMessage], CCMessage]] = None,
        open_body: Callable[[CCMessage], Dict[str, Any]] = BodyGate().open,
        lost_after: float = LOST_AFTER,
        on_change: Optional[Callable[[bool], None]] = None,
    ) -> None:
        self.target = target
        self.seal = seal
        #: the owner's gate: a pong is read only once it passed (verified where configured)
        self.open_body = open_body
        self.stream = stream
        self.stats = stats
        self.log = log
        self.period = period
        self.lost_after = lost_after
        self.on_change = on_change
        self.time_ping = 0.0
        self.time_pong = time.time()
        #: when the newest answered ping was sent: what went before it on the link arrived
        self.answered = 0.0
        #: since when pongs have come without a break (0 while the link is down)
        self.up_since = self.time_pong
        self.count_ping = 0
        self.count_pong = 0
        self.rtt: Optional[float] = None
        self.link_up = True
        self._stopped = False
        self._timer = Ticker(period, self.ping, stream.io_loop.asyncio_loop)
        self._ratelog = RateLimitedLog(log)

    def start(self, assume_up: bool = True) -> None:
        """Ping from now on: the link counts as up until ``lost_after`` periods pass silent,
        or (``assume_up`` false: a link that failed, probed) as down until a pong comes."""
        self.time_pong = time.time()
        self.link_up = assume_up
        self.up_since = self.time_pong if assume_up else 0.0
        self._stopped = False
        self._timer.start()
        self.ping()

    def stop(self) -> None:
        self._stopped = True
        self._timer.stop()

    def ping(self) -> None:
        now = time.time()
        self.check(now)
        if self._stopped:
            return  # the owner stopped it on hearing the link is down (a proxy failing over)
        self.time_ping = now
        self.count_ping += 1
        msg = EchoRequestMessage(target=self.target, time=now).to_message()
        self.stream.send_cmsg(msg if self.seal is None else self.seal(msg))
        self.stats.inc("ping.sent")

    def check(self, now: float) -> None:
        """Report the link down once when pongs stopped coming."""
        silent = now - self.time_pong
        if self.link_up and silent > self.lost_after * self.period:
            self.link_up = False
            self.up_since = 0.0
            self.stats.inc("ping.link_down")
            self.log.warning("no pong from %s for %d s", self.target, silent)
            if self.on_change is not None:
                self.on_change(False)

    def take(self, frames: List[bytes]) -> None:
        """Take a message the remote addressed to this socket itself: a pong, or logged."""
        opened = self._open(frames)
        if opened is None:
            return
        msgtype, body = opened
        if msgtype != "echo.response" or body.get("orig_target") != self.target:
            self._ratelog.warning(
                "unknown:" + msgtype,
                "unknown msg from %s: %s %s",
                self.target,
                msgtype,
                body.get("msg", ""),
            )
            return
        now = time.time()
        self.count_pong += 1
        self.stats.inc("ping.received")
        sent = body.get("orig_time")
        if isinstance(sent, float) and sent > self.answered:
            self.answered = min(sent, self.time_ping)  # never later than a ping really sent
        if sent == self.time_ping:
            self.rtt = now - self.time_ping
            self.log.debug("echo time from %s: %.3f ms", self.target, self.rtt * 1000)
        else:
            self.log.debug("late pong from %s", self.target)
        self.time_pong = now
        if not self.link_up:
            self.link_up = True
            self.up_since = now
            self.log.info("pong from %s again, link is up", self.target)
            if self.on_change is not None:
                self.on_change(True)

    def _open(self, frames: List[bytes]) -> Optional[Tuple[str, Dict[str, Any]]]:
        """Type and body of a message that passed the gate; None (counted, logged) if refused."""
        try:
            msg = CCMessage(frames)
            return msg.type, self.open_body(msg)
        except MessageError as ex:
            self.stats.inc("count.invalid")
            self.stats.inc("count.invalid." + ex.code)
            self._ratelog.warning("invalid", "invalid pong from %s: %s", self.target, ex)
            return None
