"""proxy: forward messages to another cc (or several) and relay the replies back."""

from typing import Callable, List, Optional

import skytools

from cc import sockopts
from cc.failover import Failover
from cc.handler import CCHandler, HandlerConfigError
from cc.message import CCMessage
from cc.options import Option
from cc.proxylink import LinkSet
from cc.ratelog import RateLimitedLog
from cc.security import CURVE_CLIENT_DECLARED, check_curve_client
from cc.sharding import SHARD_DOWN, Sharding

CC_HANDLER = "ProxyHandler"


class ProxyHandler(CCHandler):
    """Forwards every message it gets, route stack and all, to ``remote-cc``.

    The remote ROUTER adds this proxy's identity to the route, so replies
    come back here and are relayed through the local ROUTER to whoever asked.
    With ``ping = yes`` the link is watched by echo requests (the remote needs
    an ``echo`` route).

    ``remote-cc`` may name several endpoints (hubs): one is used, and the
    proxy fails over to the next when its pings go unanswered, then back to
    the first after ``failback-after`` seconds of answers (see
    :mod:`cc.failover`; pings are on).  ``shards`` instead spreads the route
    over several end-services by the host a message comes from (see
    :mod:`cc.sharding`).

    ::

        [h:proxy]
        handler = proxy
        # one endpoint, or several to fail over between (in order of preference)
        remote-cc = tcp://10.0.0.1:22632
        #remote-cc = tcp://hub1:22632, tcp://hub2:22632
        #ping = no
        #ping-period = 1
        # periods without a pong before a link is down (5 with one endpoint, else 3)
        #ping-lost-after = 3
        # seconds the first endpoint must answer before going back to it (0: never)
        #failback-after = 60
        # instead of remote-cc: end-services a message goes to by its hostname
        #shards = tcp://writer1:22632, tcp://writer2:22632
        # a shard down: its hosts' messages wait for it, or go to their secondary
        #shard-down = wait
        # messages kept while the remote is slow or unreachable, at the most (a link
        # carries the requests of every host behind it); more are dropped and counted
        #queue-bytes = 32M
        #zmq_hwm = 100
        #zmq_linger = 500
        # CURVE to the remote: own secret certificate, the remote's public one
        #curve-client-key = /etc/cc/curve/host1.key_secret
        #curve-remote-key = /etc/cc/curve/server.key
    """

    CC_ROLES = ("local", "proxy", "end-service")
    OPTIONS = (
        Option("remote-cc", "list", None, "the cc messages are forwarded to, or several to"
               " fail over between, in order of preference (this or shards is required)",
               example="tcp://10.0.0.1:22632"),
        Option("ping", "bool", False, "ping the remote every ping-period"),
        Option("ping-period", "seconds", 1.0, "seconds between pings"),
        Option("ping-lost-after", "float", 3, "periods without a pong before a link is down"
               " (5 with one endpoint)"),
        Option("failback-after", "seconds", 60, "seconds the first endpoint must answer before"
               " going back to it; 0: never"),
        Option("shards", "list", None, "instead of remote-cc: end-services a message goes to"
               " by its hostname"),
        Option("shard-down", "enum", "wait", "a shard down: its hosts' messages wait for it,"
               " or go to their secondary", choices=SHARD_DOWN),
        Option("queue-bytes", "bytes", "32M", "bytes kept while the remote is slow, at the"
               " most; more are dropped and counted"),
    ) + sockopts.OPTIONS + CURVE_CLIENT_DECLARED  # fmt: skip

    @classmethod
    def check_config(cls, hcf, server_cf):
        """Its CURVE keys load (``--check`` and a reload find a broken key before use)."""
        check_curve_client(hcf)
        return []

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self._ratelog = RateLimitedLog(self.log)
        if hcf.has_option("shards") == hcf.has_option("remote-cc"):
            raise HandlerConfigError("[%s]: needs remote-cc or shards (one of them)" % hname)
        spread = Sharding if hcf.has_option("shards") else Failover
        self.links: LinkSet = spread(
            hname, hcf, server, self.log, self._on_remote
        )
        what = "shards" if isinstance(self.links, Sharding) else "remote-cc"
        self.log.info("forwarding to %s (%s)", ", ".join(hcf.getlist(what)), what)

    def reads_body(self, msgtype: str) -> bool:
        return self.links.reads_body

    def handle_msg(self, msg: CCMessage) -> None:
        self.links.send(msg)

    def _on_remote(self, frames: List[bytes]) -> None:
        if frames[0]:
            self.server.relay(frames)
            return
        # an empty route is addressed to this proxy itself: only a watched link expects one
        self.stats.inc("count.dropped.unexpected")
        self._ratelog.warning("unexpected", "unexpected message to %s itself", self.hname)

    def reconfigure(self, hcf: skytools.Config) -> Optional[Callable[[], None]]:
        """A sharding proxy takes a new shard list in place (see :mod:`cc.sharding`)."""
        if not (isinstance(self.links, Sharding) and hcf.has_option("shards")):
            return None
        change = self.links.reconfigure(self.cf, hcf)
        if change is None:
            return None

        def apply() -> None:
            change()
            self.cf = hcf

        return apply

    def stop(self):
        self.links.close()
