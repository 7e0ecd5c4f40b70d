"""ZeroMQ sockets on the tornado IOLoop: batch receive, lean send, bounded queues.

:class:`CCStream` does what pyzmq's ``ZMQStream`` does (watch the socket's
edge-triggered FD, re-check ``EVENTS`` after every operation) with three
differences that matter for a router:

* a readiness event drains up to ``batch`` messages instead of one, then
  yields to the loop, so a flood on one socket cannot starve the others or
  the timers;
* frames are sent with the backend's ``send`` directly (pyzmq's Python-level
  ``send_multipart`` costs more than libzmq itself on a small message), and
  received with ``recv`` + ``RCVMORE``;
* the send queue is bounded (``qmaxsize``, the ``zmq_hwm`` of its owner) and
  every message dropped is counted.

A ROUTER socket is set to ``ROUTER_MANDATORY`` so that a reply to a peer that
has gone is counted as ``unroutable`` instead of vanishing silently.  A reply
to a peer whose pipe is full (a client with many requests in flight, a proxy
link carrying those of many hosts) waits in that peer's own queue
(:class:`PeerWaits`), bounded in bytes per peer and for all peers together,
so a slow peer neither loses replies to a moment's backlog nor holds up the
others; past the bounds messages are dropped as ``peer_full``.  Each wait is
counted (``count.waited.peer_full``).

libzmq tells a ROUTER that a full pipe has room again only by a command to
the socket's mailbox, and that command is consumed by whichever socket call
comes next: a receive, a send, or the ``EVENTS`` check.  So waiting messages
are retried in every readiness handling, after the socket's own work, and
every send made outside it schedules one (a send can consume the edge of the
FD that announces incoming messages too: a stream that skipped the re-check
after sending stopped reading its socket for good).  A backed-off timer
covers the one case no event follows: room announced by the last ``EVENTS``
check of a handling.

:class:`CCReqStream` is the client side of request/reply: it puts a query id
in the route, matches replies to it and times queries out.  Every message it
receives passes its owner's :class:`~cc.message.BodyGate` first.
"""

import collections
import errno
import heapq
import logging
import time
from typing import Callable, Deque, Dict, List, Optional, Tuple

import zmq
from tornado.ioloop import IOLoop

from cc.message import BodyGate, CCMessage, MessageError
from cc.ratelog import RateLimitedLog
from cc.stats import Stats

__all__ = ["CCStream", "CCReqStream", "PeerWaits", "DEFAULT_BATCH", "frames_cost"]

log = logging.getLogger("cc.stream")

#: messages handled per readiness event before yielding to the loop
DEFAULT_BATCH = 256
#: bytes waiting for one full ROUTER peer, and for all of them, at the most (defaults)
PEER_WAIT_BYTES = 32 << 20
TOTAL_WAIT_BYTES = 256 << 20
#: what a queued message costs beyond its frames' bytes, per frame (bytes object, list slot)
FRAME_OVERHEAD = 64
#: seconds between fallback retries for full peers: the first, and the longest while none progress
RETRY_FIRST, RETRY_MAX = 0.002, 0.25

# The backend's send skips the Python-level argument handling of
# zmq.Socket.send; recv and get are the backend's already.
try:
    _backend_send = zmq.backend.Socket.send
except AttributeError:  # pragma: no cover - a backend without the Cython class
    _backend_send = zmq.Socket.send

_NOBLOCK = zmq.NOBLOCK
_MORE = zmq.NOBLOCK | zmq.SNDMORE
_RCVMORE = zmq.RCVMORE
_EVENTS = zmq.EVENTS
_POLLIN = zmq.POLLIN
_POLLOUT = zmq.POLLOUT

Frames = List[bytes]


def frames_cost(frames: Frames) -> int:
    """The memory a queued message is charged: its bytes and a little per frame."""
    return sum(map(len, frames)) + FRAME_OVERHEAD * len(frames)


class PeerWaits:
    """Messages waiting for ROUTER peers whose pipes are full, bounded in bytes.

    Each peer's messages keep their order; a message that would take one peer
    past ``peer_bytes``, or all of them past ``total_bytes``, is refused.
    """

    def __init__(self, peer_bytes: int = PEER_WAIT_BYTES, total_bytes: int = TOTAL_WAIT_BYTES):
        self.peer_bytes = peer_bytes
        self.total_bytes = total_bytes
        self._queues: Dict[bytes, Deque[Frames]] = {}
        self._bytes: Dict[bytes, int] = {}
        #: messages and their cost waiting, all peers together
        self.count = 0
        self.nbytes = 0

    def __bool__(self) -> bool:
        return bool(self._queues)

    def __contains__(self, peer: bytes) -> bool:
        return peer in self._queues

    def add(self, frames: Frames) -> bool:
        """Keep ``frames`` for its peer (``frames[0]``); False if a bound refuses it."""
        peer, cost = frames[0], frames_cost(frames)
        held = self._bytes.get(peer, 0)
        if held + cost > self.peer_bytes or self.nbytes + cost > self.total_bytes:
            return False
        queue = self._queues.get(peer)
        if queue is None:
            queue = self._queues[peer] = collections.deque()
        queue.append(frames)
        self._bytes[peer] = held + cost
        self.count += 1
        self.nbytes += cost
        return True

    def queues(self) -> List[Deque[Frames]]:
        """Every waiting peer's queue (a copy of the list: :meth:`release` may remove one)."""
        return list(self._queues.values())

    def release(self, frames: Frames) -> None:
        """``frames`` has left the front of its peer's queue (sent or dropped)."""
        peer, cost = frames[0], frames_cost(frames)
        self.count -= 1
        self.nbytes -= cost
        if self._queues[peer]:
            self._bytes[peer] -= cost
        else:
            del self._queues[peer], self._bytes[peer]

    def clear(self) -> List[Frames]:
        """Forget everything; returns what was waiting."""
        waiting = [frames for queue in self._queues.values() for frames in queue]
        self._queues.clear()
        self._bytes.clear()
        self.count = self.nbytes = 0
        return waiting

    def summary(self, top: int = 10) -> List[str]:
        """Lines for the infofile: totals, then the peers with the most bytes waiting."""
        lines = ["peers: %d" % len(self._queues), "messages: %d" % self.count]
        lines.append("bytes: %d" % self.nbytes)
        busiest = heapq.nlargest(top, self._bytes.items(), key=lambda kv: kv[1])
        lines.extend(
            "peer %s: %d messages, %d bytes" % (peer.hex(), len(self._queues[peer]), nbytes)
            for peer, nbytes in busiest
        )
        return lines


class CCStream:
    """One socket driven by the IOLoop.

    :param sock: the socket; the stream owns it and closes it in :meth:`close`
    :param io_loop: the loop to run on
    :param stats: where drops are counted
    :param qmaxsize: most messages waiting to be sent; more are dropped and counted
    :param qmaxbytes: most bytes (:func:`frames_cost`) waiting to be sent, 0 for no such bound
    :param name: names the stream in logs
    :param batch: most messages received per readiness event
    :param waits: where messages for full ROUTER peers wait (default: the default bounds)
    """

    def __init__(
        self,
        sock: zmq.Socket,
        io_loop: IOLoop,
        stats: Stats,
        qmaxsize: int = 100,
        qmaxbytes: int = 0,
        name: str = "stream",
        batch: int = DEFAULT_BATCH,
        waits: Optional[PeerWaits] = None,
    ) -> None:
        self.socket = sock
        self.io_loop = io_loop
        self.stats = stats
        self.qmaxsize = max(1, qmaxsize)
        self.qmaxbytes = qmaxbytes
        self.name = name
        self.batch = max(1, batch)
        self.is_router = sock.type == zmq.ROUTER
        if self.is_router:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._queue: Deque[Frames] = collections.deque()
        self._queue_bytes = 0
        self.waits = waits if waits is not None else PeerWaits()
        self._retry: object = None
        self._retry_delay = RETRY_FIRST
        self._recv_callback: Optional[Callable[[Frames], None]] = None
        self._scheduled = False
        self._ratelog = RateLimitedLog(log)
        self._fd = sock.getsockopt(zmq.FD)
        io_loop.add_handler(self._fd, self._handle_events, IOLoop.READ)

    # -- public API ---------------------------------------------------------

    def on_recv(self, callback: Optional[Callable[[Frames], None]]) -> None:
        """Call ``callback(frames)`` for each received message (None stops receiving)."""
        self._recv_callback = callback
        if callback is not None:
            self._schedule()

    def send_multipart(self, frames: Frames) -> None:
        """Send now if the socket takes it, else queue (bounded); never blocks."""
        if self.socket is None:  # closed (a handler stopping while the server drains)
            self._drop(frames, "closed")
            return
        if self._queue:
            self._enqueue(frames)
            return
        if self.waits and frames[0] in self.waits:
            self._wait(frames)  # behind what already waits for that peer
            self._schedule()
            return
        try:
            self._send(frames)
        except zmq.Again:
            if self.is_router:
                self._wait(frames)
            else:
                self._enqueue(frames)
        except zmq.ZMQError as ex:
            self._send_failed(frames, ex)
        # sending may have consumed the FD's edge for incoming messages or for room
        self._schedule()

    def send_cmsg(self, msg: CCMessage) -> None:
        self.send_multipart(msg.frames)

    @property
    def queued(self) -> int:
        """Messages waiting in the send queue."""
        return len(self._queue)

    def close(self, linger: Optional[int] = None) -> None:
        """Stop watching the socket and close it; queued messages are dropped and counted."""
        if self.socket is None:
            return
        for frames in self._queue:
            self._drop(frames, "closed")
        self._queue.clear()
        self._queue_bytes = 0
        for frames in self.waits.clear():
            self._drop(frames, "closed")
        if self._retry is not None:
            self.io_loop.remove_timeout(self._retry)
        self.io_loop.remove_handler(self._fd)
        self.socket.close(linger)
        self.socket = None  # type: ignore[assignment]

    @property
    def closed(self) -> bool:
        return self.socket is None

    # -- internals ------------------------------------------------------------

    def _send(self, frames: Frames) -> None:
        sock = self.socket
        last = len(frames) - 1
        for i in range(last):
            _backend_send(sock, frames[i], _MORE)
        _backend_send(sock, frames[last], _NOBLOCK)

    def _send_failed(self, frames: Frames, ex: zmq.ZMQError) -> None:
        if ex.errno == errno.EHOSTUNREACH:
            self._drop(frames, "unroutable")
        else:
            self._drop(frames, "send_error")
            self._ratelog.error("send:%s" % self.name, "%s: send failed: %s", self.name, ex)

    def _enqueue(self, frames: Frames) -> None:
        cost = frames_cost(frames)
        if len(self._queue) >= self.qmaxsize or (
            self.qmaxbytes and self._queue_bytes + cost > self.qmaxbytes
        ):
            self._drop(frames, "queue_full")
        else:
            self._queue.append(frames)
            self._queue_bytes += cost

    def _dequeued(self, frames: Frames) -> None:
        self._queue_bytes -= frames_cost(frames)

    def _wait(self, frames: Frames) -> None:
        """A ROUTER peer's pipe is full: keep the message for it, bounded."""
        if self.waits.add(frames):
            self.stats.inc("count.waited.peer_full")
        else:
            self._drop(frames, "peer_full")

    def _send_waiting(self) -> None:
        """Send what waits for full peers, as far as each peer's pipe takes it.

        A peer that has gone fails with ``EHOSTUNREACH``: its messages are
        dropped as ``unroutable``, one by one, right here.
        """
        release = self.waits.release
        for queue in self.waits.queues():
            self._send_from(queue, len(queue), release)

    def _arm_retry(self) -> None:
        """Fallback for room that no event will announce (see the module docstring)."""
        if self._retry is None:
            self._retry = self.io_loop.call_later(self._retry_delay, self._retry_waiting)

    def _retry_waiting(self) -> None:
        self._retry = None
        before = self.waits.count
        self._handle_events()
        progress = self.waits.count < before
        self._retry_delay = RETRY_FIRST if progress else min(2 * self._retry_delay, RETRY_MAX)

    def _drop(self, frames: Frames, reason: str) -> None:
        stats = self.stats
        stats.inc("count.dropped." + reason)
        stats.inc("bytes.dropped." + reason, sum(map(len, frames)))
        self._ratelog.warning(
            "%s:%s" % (self.name, reason), "%s: message dropped (%s)", self.name, reason
        )

    def _schedule(self) -> None:
        if not self._scheduled and self.socket is not None:
            self._scheduled = True
            self.io_loop.add_callback(self._handle_events)

    def _handle_events(self, fd: object = None, events: object = None) -> None:
        self._scheduled = False
        sock = self.socket
        if sock is None:
            return
        try:
            ev = sock.get(_EVENTS)
            if ev & _POLLIN and self._recv_callback is not None:
                self._drain()
            if self._queue and ev & _POLLOUT:
                self._flush()
            if self.socket is None:
                return
            if self.waits:
                self._send_waiting()
            # edge-triggered FD: what is still pending will not signal again
            ev = sock.get(_EVENTS)
        except zmq.ZMQError as ex:
            if self.socket is not None:
                log.error("%s: socket error: %s", self.name, ex)
            return
        if (ev & _POLLIN and self._recv_callback is not None) or (self._queue and ev & _POLLOUT):
            self._schedule()
        elif self.waits:
            self._arm_retry()

    def _drain(self) -> None:
        recv_frames = self._recv_frames
        for _ in range(self.batch):
            try:
                frames = recv_frames()
            except zmq.Again:
                return
            callback = self._recv_callback
            if callback is None:
                return
            try:
                callback(frames)
            except Exception:
                log.exception("%s: receive callback %r failed", self.name, callback)
            if self.socket is None:
                return

    def _recv_frames_get(self) -> Frames:
        """One message: ``recv`` + ``get(RCVMORE)`` per frame (fastest on pyzmq < 25)."""
        recv = self.socket.recv
        get = self.socket.get
        frames = [recv(_NOBLOCK)]
        while get(_RCVMORE):
            frames.append(recv(_NOBLOCK))
        return frames

    def _recv_frames_more(self) -> Frames:
        """One message from zero-copy frames' ``more`` flag: pyzmq >= 25 makes those cheap, while
        its ``get()`` converts every option to an enum first."""
        recv = self.socket.recv
        frame = recv(_NOBLOCK, copy=False)
        frames = [frame.bytes]
        while frame.more:
            frame = recv(_NOBLOCK, copy=False)
            frames.append(frame.bytes)
        return frames

    _recv_frames = _recv_frames_more if zmq.pyzmq_version_info() >= (25,) else _recv_frames_get

    def _flush(self) -> None:
        self._send_from(self._queue, self.batch, self._dequeued)

    def _send_from(
        self, queue: Deque[Frames], limit: int, left: Optional[Callable[[Frames], None]] = None
    ) -> None:
        """Send from the front of ``queue`` until the socket is full, ``limit`` at most.

        A send error drops and counts the message; ``left(frames)`` is told of
        each message that leaves the queue.
        """
        for _ in range(limit):
            if not queue:
                return
            frames = queue[0]
            try:
                self._send(frames)
            except zmq.Again:
                return
            except zmq.ZMQError as ex:
                self._send_failed(frames, ex)
            queue.popleft()
            if left is not None:
                left(frames)


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
