"""A proxy's ``shards``: a route spread over several end-services by originating host.

Each message goes to the shard its body's ``hostname`` ranks first by
rendezvous hashing (:mod:`cc.rendezvous`) over the shard endpoints as written
in ``shards``: a host's messages always land on the same end-service (its log
copy on one tailwriter), and adding a shard moves only the hosts it takes.
The proxy reads each body for the host name (bounded, verified where the
server verifies), so a hub that shards must be able to open the bodies it
shards (not ``cms-encrypt``-ed to a key it lacks).

Every shard is pinged (``ping-period``); one silent for ``ping-lost-after``
periods is down.  ``shard-down`` says what its hosts' messages do then:

* ``wait`` (the default): they wait for it, in the link's bounded queue and
  libzmq's pipe, and go when it answers again; what was sent to it since
  the last ping it answered is resent then, for the resendable families
  (:data:`~cc.proxylink.RESEND_FAMILIES`).  Nothing is lost or split: a
  host's file stays whole on its own writer;
* ``secondary``: they go to the next shard in the host's ranking that is up,
  with what the dead link held (:meth:`~cc.proxylink.ProxyLink.fail`); back
  to the first as soon as it answers.  A host's copy is then split between
  two writers (right for infowriter, where each file version is whole; a
  tailwriter copy gets a gap at the primary).

A reload takes a changed shard list (and ``shard-down``) in place: shards
kept keep their links, a removed shard's held messages go to their hosts'
new shards.
"""

from typing import Callable, Dict, List, Optional

import skytools

from cc.handler import HandlerConfigError
from cc.message import CCMessage, MessageError
from cc.peerwaits import Frames
from cc.proxylink import LinkSet, ProxyLink, resendable
from cc.rendezvous import owner, ranking

__all__ = ["Sharding", "SHARD_DOWN", "RELOADABLE"]

#: the values of ``shard-down``
SHARD_DOWN = ("wait", "secondary")

#: options a reload takes in place; a change of any other replaces the handler
RELOADABLE = ("shards", "shard-down")


class Sharding(LinkSet):
    """The links of ``shards`` and which one takes each host."""

    reads_body = True

    def make(self, hcf: skytools.Config) -> None:
        self.links: Dict[str, ProxyLink] = {}
        self.urls: List[str] = []
        #: per shard down (``wait``): what it may have lost, resent when it answers again
        self._held: Dict[str, List[Frames]] = {}
        self.apply(hcf, *self.check(self.hname, hcf))

    @staticmethod
    def check(hname: str, hcf: skytools.Config) -> "tuple[List[str], str]":
        """The shard list and ``shard-down`` of ``hcf``; raise if the list cannot work."""
        urls = hcf.getlist("shards")
        if not urls or len(set(urls)) != len(urls):
            raise HandlerConfigError("[%s]: shards must name distinct endpoints" % hname)
        return urls, hcf.get("shard-down", "wait")  # one of SHARD_DOWN: the option check ran

    def apply(self, hcf: skytools.Config, urls: List[str], policy: str) -> None:
        """Take ``urls`` and ``policy``: links for new shards, a removed one's messages moved."""
        self.policy = policy
        removed = [self.links.pop(url) for url in self.urls if url not in urls]
        held = [f for url in self.urls if url not in urls for f in self._held.pop(url, [])]
        for url in urls:
            if url not in self.links:
                link = ProxyLink(
                    url, self.hname, hcf, self.server, self.log, self.on_recv, self._changed
                )
                link.watch()
                self.links[url] = link
        if self.urls and urls != self.urls:
            self.log.info("shards now %s", ", ".join(urls))
        self.urls = list(urls)
        for link in removed:
            held.extend(link.take_back())
            link.close()
        for frames in held:
            self._route(frames)

    # -- sending -----------------------------------------------------------------------

    def send(self, msg: CCMessage) -> None:
        host = msg.get_body().get("hostname")  # opened by the server's gate
        self._choose(host).send(msg.frames, resendable(msg.frames))

    def _route(self, frames: Frames) -> None:
        """Send frames taken back from a link: their host read again (routing, not trust)."""
        try:
            host = CCMessage(frames).get_body().get("hostname")
        except MessageError:
            host = None  # it passed the gate once: no longer readable only if a bound changed
        self._choose(host).send(frames, resendable(frames))

    def _choose(self, host: object) -> ProxyLink:
        if not isinstance(host, str):
            self.stats.inc("proxy.shard.no_hostname")
            host = ""
        first = self.links[self.urls[owner(host, self.urls)]]
        if self.policy == "wait" or first.up:
            return first
        for i in ranking(host, self.urls)[1:]:
            link = self.links[self.urls[i]]
            if link.up:
                self.stats.inc("proxy.shard.secondary")
                return link
        return first

    # -- shards down and up ----------------------------------------------------------------

    def _changed(self, link: ProxyLink, up: bool) -> None:
        if self.links.get(link.url) is not link:
            return  # removed by a reload meanwhile
        if up:
            held = self._held.pop(link.url, [])
            self.log.info("shard %s is back (%d messages sent again)", link.url, len(held))
            self.stats.inc("proxy.resent", len(held))
            for frames in held:
                link.send(frames, True)
        elif self.policy == "secondary":
            moved = link.fail()
            self.log.warning("shard %s is down: its hosts go to their secondaries", link.url)
            self.stats.inc("proxy.resent", len(moved))
            for frames in moved:
                self._route(frames)
        else:
            # taken now: the first pong after its return confirms every ping before it
            self._held[link.url] = self._held.get(link.url, []) + link.unconfirmed()
            self.log.warning("shard %s is down: its hosts' messages wait for it", link.url)

    def reconfigure(
        self, old: skytools.Config, hcf: skytools.Config
    ) -> Optional[Callable[[], None]]:
        """A reload that changes only :data:`RELOADABLE` options is taken in place."""
        if _options(old, RELOADABLE) != _options(hcf, RELOADABLE):
            return None
        urls, policy = self.check(self.hname, hcf)
        return lambda: self.apply(hcf, urls, policy)

    def close(self) -> None:
        for link in self.links.values():
            link.close()


def _options(hcf: skytools.Config, leave_out: "tuple[str, ...]") -> Dict[str, str]:
    """A section's options, but ``leave_out``."""
    section = hcf.main_section
    return {k: v for k, v in hcf.cf.items(section) if k not in leave_out}
