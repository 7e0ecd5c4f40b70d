"""The client side of request/reply on the IOLoop: query ids, replies matched, timeouts.

:class:`CCReqStream` puts a query id in the route, matches replies to it and
times queries out.  Every message it receives passes its owner's
:class:`~cc.message.BodyGate` first.
"""

import logging
import time
from typing import Callable, Dict, Optional, Tuple

import zmq
from tornado.ioloop import IOLoop

from cc.message import BodyGate, CCMessage, MessageError
from cc.ratelog import RateLimitedLog
from cc.stats import Stats
from cc.stream import CCStream, Frames

__all__ = ["CCReqStream"]

log = logging.getLogger("cc.stream")


QueryCallback = Callable[[Optional[CCMessage]], bool]


class CCReqStream:
    """Request/reply client on the IOLoop.

    :meth:`query` sends a message with a fresh query id as its innermost route
    id; a reply carrying that id goes to the query's callback.  The callback
    gets ``None`` on timeout and returns True to keep waiting for more replies
    (the timeout is then re-armed), False when done.

    ``gate`` opens every message received (replies and route-less messages
    such as tasks) before a callback sees it: where the owner's section
    verifies, callbacks get only verified bodies.  A refused message is
    counted (``count.invalid.<code>``), logged (rate-limited) and dropped; a
    query it claimed to answer keeps waiting for the real reply.
    """

    #: queries waiting for replies at the most
    MAX_PENDING = 10000

    def __init__(
        self,
        url: str,
        io_loop: IOLoop,
        context: zmq.Context,
        stats: Stats,
        hwm: int = 100,
        linger: int = 500,
        seal: Optional[Callable[[CCMessage], CCMessage]] = None,
        gate: Optional[BodyGate] = None,
    ) -> None:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.RCVHWM, hwm)
        sock.setsockopt(zmq.LINGER, linger)
        sock.connect(url)
        self.url = url
        self.io_loop = io_loop
        self.stats = stats
        #: signs what is sent (``CryptoContext.seal``), or None
        self.seal = seal
        self.gate = gate if gate is not None else BodyGate()
        self._ratelog = RateLimitedLog(log)
        self.stream = CCStream(sock, io_loop, stats, qmaxsize=hwm, name="query:" + url)
        self.stream.on_recv(self._on_recv)
        self._seq = 0
        self._queries: Dict[bytes, Tuple[QueryCallback, object, CCMessage, float]] = {}
        self._on_message: Optional[Callable[[CCMessage], None]] = None

    def on_message(self, callback: Optional[Callable[[CCMessage], None]]) -> None:
        """Messages addressed to this client itself (no route), such as tasks."""
        self._on_message = callback

    def publish(self, msg: CCMessage) -> None:
        """Send without expecting a reply."""
        msg = msg.with_route(())
        self.stream.send_multipart((msg if self.seal is None else self.seal(msg)).frames)

    def query(self, msg: CCMessage, callback: QueryCallback, timeout: float = 10.0) -> bytes:
        """Send ``msg`` and pass its replies (or None on timeout) to ``callback``."""
        if len(self._queries) >= self.MAX_PENDING:
            raise MessageError("too-many-queries", "%d queries pending" % len(self._queries))
        self._seq += 1
        qid = b"Q%06d" % self._seq
        msg = msg.with_route([qid])
        self._queries[qid] = (callback, self._arm(qid, timeout), msg, timeout)
        self.stream.send_multipart((msg if self.seal is None else self.seal(msg)).frames)
        return qid

    def resend(self, qid: bytes) -> None:
        """Send a pending query again with the same id and re-arm its timeout.

        A signed query is signed afresh with a new ``time``: the receiver
        rejects an identical signed message as a replay.
        """
        callback, handle, msg, timeout = self._queries[qid]
        self._disarm(handle)
        self._queries[qid] = (callback, self._arm(qid, timeout), msg, timeout)
        if self.seal is not None:
            msg = self.seal(msg.reply(msg.type, dict(msg.get_body(), time=time.time()), msg.blob))
        self.stream.send_multipart(msg.frames)

    def cancel(self, qid: bytes) -> None:
        entry = self._queries.pop(qid, None)
        if entry:
            self._disarm(entry[1])

    @property
    def pending(self) -> int:
        return len(self._queries)

    def close(self) -> None:
        for qid in list(self._queries):
            self.cancel(qid)
        self.stream.close()

    def _arm(self, qid: bytes, timeout: float) -> object:
        if timeout <= 0:
            return None
        return self.io_loop.call_later(timeout, self._on_timeout, qid)

    def _disarm(self, handle: object) -> None:
        if handle is not None:
            self.io_loop.remove_timeout(handle)

    def _on_timeout(self, qid: bytes) -> None:
        entry = self._queries.pop(qid, None)
        if entry is None:
            return
        self.stats.inc("count.query_timeout")
        self._finish(qid, entry, None)

    def _on_recv(self, frames: Frames) -> None:
        try:
            msg = CCMessage(frames)
            self.gate.open(msg)
        except MessageError as ex:
            self.stats.inc("count.invalid")
            self.stats.inc("count.invalid." + ex.code)
            self._ratelog.warning(
                "invalid:" + ex.code, "invalid message from %s (%s): %s", self.url, ex.code, ex.msg
            )
            return
        route = msg.route
        if not route and self._on_message is not None:
            try:
                self._on_message(msg)
            except Exception:
                log.exception("message callback %r failed on %s", self._on_message, msg.type)
            return
        entry = self._queries.get(route[0]) if len(route) == 1 else None
        if entry is None:
            self.stats.inc("count.reply_unknown")
            log.debug("reply for unknown query %r: %s", route, msg.type)
            return
        qid = route[0]
        self._disarm(entry[1])
        self._finish(qid, entry, msg)

    def _finish(
        self,
        qid: bytes,
        entry: Tuple[QueryCallback, object, CCMessage, float],
        msg: Optional[CCMessage],
    ) -> None:
        callback, _, sent, timeout = entry
        try:
            keep = callback(msg)
        except Exception:
            log.exception("query callback %r failed", callback)
            keep = False
        if keep and msg is not None:
            self._queries[qid] = (callback, self._arm(qid, timeout), sent, timeout)
        else:
            self._queries.pop(qid, None)
