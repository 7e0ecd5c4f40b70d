"""ZeroMQ sockets on the tornado IOLoop: batch receive, lean send, bounded queues.

:class:`CCStream` does what pyzmq's ``ZMQStream`` does (watch the socket's
edge-triggered FD, re-check ``EVENTS`` after every operation) with three
differences that matter for a router:

* a readiness event drains up to ``batch`` messages instead of one, then
  yields to the loop, so a flood on one socket cannot starve the others or
  the timers; an owner may take them as one list (:meth:`CCStream.on_recv_batch`)
  to do one step for all before the next;
* frames are sent with the backend's ``send`` directly (pyzmq's Python-level
  ``send_multipart`` costs more than libzmq itself on a small message), and
  received with ``recv`` + ``RCVMORE``;
* the send queue is bounded (``qmaxsize``, the ``zmq_hwm`` of its owner) and
  every message dropped is counted.

A ROUTER socket is set to ``ROUTER_MANDATORY`` so that a reply to a peer that
has gone is counted as ``unroutable`` instead of vanishing silently.  A reply
to a peer whose pipe is full (a client with many requests in flight, a proxy
link carrying those of many hosts) waits in that peer's own queue
(:class:`~cc.peerwaits.PeerWaits`), bounded in bytes per peer and for all peers together,
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

The request/reply client on top of it is :class:`cc.reqstream.CCReqStream`.
"""

import asyncio
import collections
import errno
import logging
from typing import Any, Callable, Deque, List, Optional

import zmq
from tornado.ioloop import IOLoop

from cc.backoff import Backoff
from cc.message import CCMessage
from cc.peerwaits import Frames, PeerWaits, frames_cost
from cc.ratelog import RateLimitedLog
from cc.stats import Stats

__all__ = ["CCStream", "DEFAULT_BATCH", "BATCH_BYTES", "Frames"]

log = logging.getLogger("cc.stream")

#: messages handled per readiness event before yielding to the loop
DEFAULT_BATCH = 256
#: bytes a batch taken whole (:meth:`CCStream.on_recv_batch`) holds before it is handed over:
#: received at once, ``batch`` large messages would all be in memory together
BATCH_BYTES = 1 << 20
#: seconds between fallback retries for full peers: the first, and the longest while none progress
RETRY_FIRST, RETRY_MAX = 0.002, 0.25

# The backend's send skips the Python-level argument handling of
# zmq.Socket.send; recv and get are the backend's already.
try:
    _backend_send = zmq.backend.Socket.send
except AttributeError:  # pragma: no cover - a backend without the Cython class
    _backend_send = zmq.Socket.send

# plain ints: with pyzmq's enums every ``events & POLLIN`` builds a flag object
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)


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
        self._retry: Optional[asyncio.TimerHandle] = None
        self._retry_backoff = Backoff(RETRY_FIRST, RETRY_MAX, jitter=0)
        self._recv_callback: Optional[Callable[[Any], None]] = None
        self._recv_batched = False
        self._scheduled = False
        self._ratelog = RateLimitedLog(log)
        self._fd = sock.getsockopt(zmq.FD)
        # straight on the asyncio loop, as every scheduling of a handling: an idle
        # process's wake-ups are mostly this path, and tornado's wrappers double it
        self._asyncio_loop = io_loop.asyncio_loop  # type: ignore[attr-defined]
        self._asyncio_loop.add_reader(self._fd, self._handle_events)

    # -- public API ---------------------------------------------------------

    def on_recv(self, callback: Optional[Callable[[Frames], None]]) -> None:
        """Call ``callback(frames)`` for each received message (None stops receiving)."""
        self._set_recv(callback, batched=False)

    def on_recv_batch(self, callback: Optional[Callable[[List[Frames]], None]]) -> None:
        """Call ``callback(batch)`` with the messages one readiness event drains, in order
        (at most ``batch`` of them, and past :data:`BATCH_BYTES` only the last; None stops
        receiving).

        The owner can then do one step for every message before the next step
        for any (the server verifies a batch back to back, with the crypto
        code and key still in the CPU's caches).
        """
        self._set_recv(callback, batched=True)

    def _set_recv(self, callback: Optional[Callable[[Any], None]], batched: bool) -> None:
        self._recv_callback = callback
        self._recv_batched = batched
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

    def take_queued(self) -> List[Frames]:
        """Take back the messages waiting in the send queue: never handed to the socket,
        they may go elsewhere (a proxy failing over sends them on its next link)."""
        taken = list(self._queue)
        self._queue.clear()
        self._queue_bytes = 0
        return taken

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
            self._retry.cancel()
        self._asyncio_loop.remove_reader(self._fd)
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
            delay = self._retry_backoff.next_delay()
            self._retry = self._asyncio_loop.call_later(delay, self._retry_waiting)

    def _retry_waiting(self) -> None:
        self._retry = None
        self._handle_events()

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
            self._asyncio_loop.call_soon(self._handle_events)

    def _handle_events(self) -> None:
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
                before = self.waits.count
                self._send_waiting()
                if self.waits.count < before:
                    self._retry_backoff.reset()  # the fallback starts short again
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
        if self._recv_batched:
            received: List[Frames] = []
            size = 0
            try:
                while len(received) < self.batch and size < BATCH_BYTES:
                    frames = recv_frames()
                    received.append(frames)
                    size += sum(map(len, frames))
            except zmq.Again:
                pass
            if received:
                self._run_callback(received)
            return
        for _ in range(self.batch):
            try:
                frames = recv_frames()
            except zmq.Again:
                return
            if self._recv_callback is None:
                return
            self._run_callback(frames)
            if self.socket is None:
                return

    def _run_callback(self, received: object) -> None:
        callback = self._recv_callback
        try:
            callback(received)  # type: ignore[misc]
        except Exception:
            log.exception("%s: receive callback %r failed", self.name, callback)

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
