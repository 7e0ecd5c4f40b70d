"""delay: hold messages for a while, then pass them on in order."""

import collections
import time
from typing import Deque, Optional, Tuple

from cc.handler import CCHandler
from cc.message import CCMessage
from cc.options import REQUIRED, Option

CC_HANDLER = "Delay"


class Delay(CCHandler):
    """Forwards each message to ``forward-to`` ``delay`` seconds after it came.

    The queue holds at most ``queue-size`` messages; more are dropped and
    counted (``delay.count.dropped``).

    ::

        [h:delay]
        handler = delay
        forward-to = h:proxy
        delay = 5
        #queue-size = 10000
    """

    CC_ROLES = ("local", "proxy", "end-service")
    OPTIONS = (
        Option("forward-to", "str", REQUIRED, "the handler section messages go to after the"
               " delay", example="h:proxy"),
        Option("delay", "seconds", 0, "seconds each message waits"),
        Option("queue-size", "int", 10000, "messages waiting, at the most"),
    )  # fmt: skip
    REFERENCES = ("forward-to",)

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self.target = server.get_handler(hcf.get("forward-to"))
        self.delay = hcf.getfloat("delay", 0)
        self.queue_size = hcf.getint("queue-size", 10000)
        self.queue: Deque[Tuple[float, CCMessage]] = collections.deque()
        self._timer: Optional[object] = None

    def reads_body(self, msgtype: str) -> bool:
        return self.target.reads_body(msgtype)

    def handle_msg(self, msg: CCMessage) -> None:
        self.stats.inc("delay.count")
        self.stats.inc("delay.bytes", msg.size)
        if len(self.queue) >= self.queue_size:
            self._count("dropped", msg)
            return
        self.queue.append((time.monotonic() + self.delay, msg))
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        due = self.queue[0][0]
        self._timer = self.io_loop.call_later(max(0.0, due - time.monotonic()), self._release)

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self.queue and self.queue[0][0] <= now:
            _, msg = self.queue.popleft()
            self._count(self.server.forward(self.target, msg), msg)
        if self.queue:
            self._arm()

    def _count(self, result: str, msg: CCMessage) -> None:
        self.stats.inc("delay.count." + result)
        self.stats.inc("delay.bytes." + result, msg.size)

    def stop(self):
        """Pass on what is still held: stopping must not lose messages."""
        if self._timer is not None:
            self.io_loop.remove_timeout(self._timer)
            self._timer = None
        while self.queue:
            _, msg = self.queue.popleft()
            self._count(self.server.forward(self.target, msg), msg)
