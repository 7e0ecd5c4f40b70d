"""A proxy's ``remote-cc`` with several endpoints: one in use, the next when it stops answering.

The endpoint in use is pinged every ``ping-period``; after ``ping-lost-after``
periods without a pong (3 by default) the proxy moves to the next endpoint in
the list (round the list; an endpoint known to be down is skipped while
another is not).  On the move:

* the messages :class:`~cc.proxylink.ProxyLink.fail` gives back go out on the
  new link (resendable ones not confirmed, and what the dead link never sent);
* every task runner whose ``task.register`` passed here is sent
  ``task.reregister``, so it registers again at once, through the new hub,
  and the taskrouter routes its tasks that way.

Going back (``failback-after``, seconds, 60 by default): while another
endpoint is in use, the first one is pinged; once it has answered every ping
for that long, traffic moves back to it (the link in use is healthy, so
nothing is resent) and runners are asked to register again.  ``0`` stays on
the endpoint in use until it fails.
"""

import collections
from typing import Optional, Tuple

import skytools

from cc.handler import HandlerConfigError
from cc.message import CCMessage
from cc.msgtypes import TaskReregisterMessage
from cc.proxylink import LinkSet, ProxyLink, resendable

__all__ = ["Failover"]

#: task runners remembered for re-registration, at the most (the newest are kept)
MAX_RUNNERS = 10000


class Failover(LinkSet):
    """The links of ``remote-cc`` and which one carries the messages."""

    def make(self, hcf: skytools.Config) -> None:
        urls = hcf.getlist("remote-cc")
        if not urls:
            raise HandlerConfigError("[%s]: remote-cc names no endpoint" % self.hname)
        self.several = len(urls) > 1
        self.failback_after = hcf.getfloat("failback-after", 60)
        on_change = self._changed if self.several else None
        self.links = [
            ProxyLink(u, self.hname, hcf, self.server, self.log, self.on_recv, on_change)
            for u in urls
        ]
        self.active = 0
        if self.several or hcf.getboolean("ping", False):
            self.links[0].watch()
        #: routes of the task runners that registered through here, oldest first
        self.runners: "collections.OrderedDict[Tuple[bytes, ...], None]" = (
            collections.OrderedDict()
        )
        self._failback: Optional[object] = None

    @property
    def link(self) -> ProxyLink:
        """The link in use."""
        return self.links[self.active]

    def send(self, msg: CCMessage) -> None:
        if not self.several:
            self.link.stream.send_multipart(msg.frames)
            return
        if msg.type == "task.register":
            self._remember_runner(tuple(msg.route))
        frames = msg.frames
        self.link.send(frames, resendable(frames))

    def _remember_runner(self, route: Tuple[bytes, ...]) -> None:
        self.runners[route] = None
        self.runners.move_to_end(route)
        if len(self.runners) > MAX_RUNNERS:
            self.runners.popitem(last=False)

    # -- moving ------------------------------------------------------------------------

    def _changed(self, link: ProxyLink, up: bool) -> None:
        if not up and link is self.link:
            self._fail_over()
        elif up and link is self.links[0] and self.active != 0 and self.failback_after > 0:
            self._plan_failback()

    def _fail_over(self) -> None:
        dead = self.link
        moved = dead.fail()
        if not (dead is self.links[0] and self.failback_after > 0):
            dead.unwatch()  # only the first endpoint is watched for going back
        self.active = self._next(self.active)
        new = self.link
        new.unwatch()  # a fresh start: assumed up for ping-lost-after periods
        new.watch()
        self.stats.inc("proxy.failover")
        self.stats.inc("proxy.resent", len(moved))
        self.log.warning(
            "%s does not answer: failing over to %s (%d messages sent again)",
            dead.url,
            new.url,
            len(moved),
        )
        for frames in moved:
            new.send(frames, resendable(frames))
        self._ask_runners()

    def _next(self, dead: int) -> int:
        """The endpoint after ``dead`` in the list, skipping those known down if one is not."""
        n = len(self.links)
        order = [(dead + k) % n for k in range(1, n)]
        for i in order:
            if self.links[i].up:
                return i
        return order[0]

    def _plan_failback(self) -> None:
        if self._failback is not None:
            self.server.io_loop.remove_timeout(self._failback)
        self._failback = self.server.io_loop.call_later(self.failback_after, self._fail_back)

    def _fail_back(self) -> None:
        self._failback = None
        first = self.links[0]
        pinger = first.pinger
        if self.active == 0 or pinger is None or not pinger.link_up:
            return  # it went down again: its next pong plans anew
        self.link.unwatch()
        self.active = 0
        self.stats.inc("proxy.failback")
        self.log.info(
            "%s answered for %g s: back to it (failback-after)", first.url, self.failback_after
        )
        self._ask_runners()

    def _ask_runners(self) -> None:
        """Have every runner that registered through here register again, through the new link."""
        for route in self.runners:
            self.server.send(TaskReregisterMessage().to_message(route=list(route)))
        self.stats.inc("proxy.reregister_asked", len(self.runners))

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        if self._failback is not None:
            self.server.io_loop.remove_timeout(self._failback)
            self._failback = None
        for link in self.links:
            link.close()
