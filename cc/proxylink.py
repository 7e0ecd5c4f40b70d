"""One endpoint of a proxy: its DEALER socket, its pings, and what a failure may have lost.

A proxy with several endpoints (hubs to fail over between, end-services to
shard over) keeps a :class:`ProxyLink` for each.  Every link receives (the
replies to what was sent on it come back on it), but the proxy decides which
one carries a message.

What a link may have lost when its remote dies, and what may go elsewhere,
depends on the message family (:func:`resendable`):

* messages still in the link's own queue were never handed to the socket:
  they may go to another link whatever their family, nothing runs twice;
* messages handed to the socket since the last ping the remote answered
  (pings travel the same pipe, so what went before an answered ping
  arrived) are kept, bounded in bytes, for the families whose writers take
  a duplicate as a no-op (:data:`RESEND_FAMILIES`: acknowledged, positioned
  or newest-wins writes) and are sent again on the next link;
* the others (tasks, database calls, log records, stats) are not sent
  twice: what the dead remote held of them is lost with it, and their
  senders' timeouts (taskrouter's ``task-ack-timeout``, a caller's query
  timeout) answer for them.  A link is reopened when it fails, so that what
  libzmq still held for the old connection is not delivered hours later
  when that remote comes back.
"""

import collections
import logging
import time
from typing import TYPE_CHECKING, Callable, Deque, List, Optional, Tuple

import skytools
import zmq

from cc.message import CCMessage
from cc.peerwaits import Frames, frames_cost
from cc.ping import RemotePinger
from cc.routing import has_prefix
from cc.security import curve_client
from cc.sockopts import configure_socket
from cc.stream import CCStream

if TYPE_CHECKING:  # pragma: no cover
    from cc.handler.serverview import ServerView

__all__ = ["ProxyLink", "LinkSet", "RESEND_FAMILIES", "resendable", "QUEUE_UNCOUNTED"]

#: message families sent again after a failover: their writers take a duplicate as a no-op
#: (tailwriter writes a fragment at its offset, infowriter keeps the newest by mtime)
RESEND_FAMILIES = ("pub.logtail", "pub.infofile")

#: a link's queue is bounded in bytes, not in messages
QUEUE_UNCOUNTED = 1 << 62


def resendable(frames: Frames) -> bool:
    """Whether the message (a proxy's frames: route, '', type, ...) may be sent twice."""
    msgtype = frames[frames.index(b"") + 1]
    return has_prefix(msgtype.decode("ascii", "replace"), RESEND_FAMILIES)


class ProxyLink:
    """A DEALER connected to ``url``, its stream, its pinger and its resend window.

    :param on_recv: gets every message the remote sends
    :param on_change: gets ``(link, up)`` when pings find the link down or up again
    """

    def __init__(
        self,
        url: str,
        hname: str,
        hcf: skytools.Config,
        server: "ServerView",
        log: logging.Logger,
        on_recv: Callable[[Frames], None],
        on_change: Optional[Callable[["ProxyLink", bool], None]] = None,
    ) -> None:
        self.url = url
        self.hname = hname
        self.cf = hcf
        self.server = server
        self.stats = server.stats
        self.log = log
        self.on_recv = on_recv
        self.on_change = on_change
        self.queue_bytes = hcf.getbytes("queue-bytes", "32M")
        self.ping_period = hcf.getfloat("ping-period", 1.0)
        self.lost_after = hcf.getfloat("ping-lost-after", 3 if on_change else 5)
        #: (time handed to the socket, frames) of resendable messages not yet confirmed
        self._window: Deque[Tuple[float, Frames]] = collections.deque()
        self._window_bytes = 0
        self.stream: CCStream = self._open()
        self.pinger: Optional[RemotePinger] = None

    def _open(self) -> CCStream:
        sock = self.server.zctx.socket(zmq.DEALER)
        try:
            configure_socket(sock, self.cf)
            curve_client(sock, self.cf)
            sock.connect(self.url)
        except BaseException:
            sock.close(0)
            raise
        stream = CCStream(
            sock,
            self.server.io_loop,
            self.stats,
            qmaxsize=QUEUE_UNCOUNTED,
            qmaxbytes=self.queue_bytes,
            name="%s:%s" % (self.hname, self.url),
        )
        stream.on_recv(self._on_remote)
        return stream

    # -- pings -------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        """Pinged and answering (a link nobody pings counts as up)."""
        return self.pinger is None or self.pinger.link_up

    def watch(self, assume_up: bool = True) -> None:
        """Ping the link from now on (``assume_up``: see :meth:`RemotePinger.start`)."""
        if self.pinger is not None:
            return
        self.pinger = RemotePinger(
            self.url,
            self.stream,
            self.stats,
            self.log,
            self.ping_period,
            seal=self.server.seal,
            open_body=self.server.open_body,
            lost_after=self.lost_after,
            on_change=self._changed if self.on_change else None,
        )
        self.pinger.start(assume_up)

    def unwatch(self) -> None:
        if self.pinger is not None:
            self.pinger.stop()
            self.pinger = None

    def _changed(self, up: bool) -> None:
        assert self.on_change is not None
        self.on_change(self, up)

    def _on_remote(self, frames: Frames) -> None:
        if not frames[0] and self.pinger is not None:
            self.pinger.take(frames)  # an empty route: addressed to this link itself, a pong
        else:
            self.on_recv(frames)

    # -- sending -----------------------------------------------------------------------

    def send(self, frames: Frames, keep: bool) -> None:
        """Send; with ``keep`` (a resendable message on a watched link) keep it until confirmed."""
        if keep and self.pinger is not None and self.pinger.link_up:
            self._trim()
            cost = frames_cost(frames)
            self._window.append((time.time(), frames))
            self._window_bytes += cost
            while self._window_bytes > self.queue_bytes:
                self._window_bytes -= frames_cost(self._window.popleft()[1])
                self.stats.inc("proxy.resend.forgotten")
        self.stream.send_multipart(frames)

    def _trim(self) -> None:
        """Forget what went before the newest answered ping: it arrived."""
        answered = self.pinger.answered if self.pinger is not None else 0.0
        window = self._window
        while window and window[0][0] < answered:
            self._window_bytes -= frames_cost(window.popleft()[1])

    def unconfirmed(self) -> List[Frames]:
        """Take the resendable messages sent since the last answered ping."""
        self._trim()
        taken = [frames for _, frames in self._window]
        self._window.clear()
        self._window_bytes = 0
        return taken

    def take_back(self) -> List[Frames]:
        """What may be sent elsewhere: the resendable messages not confirmed, then every
        message of the link's own queue that is not one of them (never sent)."""
        resend = self.unconfirmed()
        kept = {id(frames) for frames in resend}
        return resend + [f for f in self.stream.take_queued() if id(f) not in kept]

    def fail(self) -> List[Frames]:
        """The remote is gone: :meth:`take_back`, and reopen the socket (what libzmq held
        for the old connection goes with the old socket); a watched link is probed."""
        moved = self.take_back()
        watched = self.pinger is not None
        self.unwatch()
        self.stream.close(0)
        self.stream = self._open()
        if watched:
            self.watch(assume_up=False)
        return moved

    def close(self) -> None:
        self.unwatch()
        self.stream.close()


class LinkSet:
    """Base of a proxy's links and its choice among them (:mod:`cc.failover`, :mod:`cc.sharding`).

    Override :meth:`make` (required: the links, from the section),
    :meth:`send` (required) and :meth:`close`; set ``reads_body`` when the
    choice needs the message's body.
    """

    #: whether :meth:`send` reads the body (the proxy then asks the server to open it)
    reads_body = False

    def __init__(
        self,
        hname: str,
        hcf: skytools.Config,
        server: "ServerView",
        log: logging.Logger,
        on_recv: Callable[[Frames], None],
    ) -> None:
        self.hname = hname
        self.server = server
        self.stats = server.stats
        self.log = log
        self.on_recv = on_recv
        self.make(hcf)

    def make(self, hcf: skytools.Config) -> None:
        raise NotImplementedError

    def send(self, msg: CCMessage) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close every link."""
