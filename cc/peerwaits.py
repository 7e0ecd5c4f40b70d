"""Messages waiting for ROUTER peers whose pipes are full, bounded in bytes.

A ROUTER socket cannot queue for one peer: libzmq's pipe to it holds
``zmq_hwm`` messages and then refuses (``EAGAIN`` with ``ROUTER_MANDATORY``).
A client with many requests in flight, or a proxy link carrying those of many
hosts, reads its replies a moment later; :class:`PeerWaits` keeps them for it
meanwhile, in order, within a byte budget per peer and for all peers, so a
reading peer loses nothing and one that stopped reading costs bounded memory.
"""

import collections
import heapq
from typing import Deque, Dict, List

__all__ = ["Frames", "PeerWaits", "frames_cost", "PEER_WAIT_BYTES", "TOTAL_WAIT_BYTES"]

Frames = List[bytes]

#: bytes waiting for one full ROUTER peer, and for all of them, at the most (defaults)
PEER_WAIT_BYTES = 32 << 20
TOTAL_WAIT_BYTES = 256 << 20
#: what a queued message costs beyond its frames' bytes, per frame (bytes object, list slot)
FRAME_OVERHEAD = 64


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
