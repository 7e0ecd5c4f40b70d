"""proxy: forward messages to another cc and relay its replies back."""

from typing import List

import zmq

from cc import sockopts
from cc.handler import CCHandler
from cc.message import CCMessage
from cc.options import REQUIRED, Option
from cc.ping import RemotePinger
from cc.ratelog import RateLimitedLog
from cc.security import CURVE_CLIENT_DECLARED, check_curve_client, curve_client
from cc.sockopts import configure_socket
from cc.stream import CCStream

CC_HANDLER = "ProxyHandler"

#: the proxy's queue is bounded in bytes, not in messages
QUEUE_UNCOUNTED = 1 << 62


class ProxyHandler(CCHandler):
    """Forwards every message it gets, route stack and all, to ``remote-cc``.

    The remote ROUTER adds this proxy's identity to the route, so replies
    come back here and are relayed through the local ROUTER to whoever asked.
    With ``ping = yes`` the link is watched by echo requests (the remote needs
    an ``echo`` route).

    ::

        [h:proxy]
        handler = proxy
        remote-cc = tcp://10.0.0.1:22632
        #ping = no
        #ping-period = 1
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
        Option("remote-cc", "url", REQUIRED, "the cc messages are forwarded to",
               example="tcp://10.0.0.1:22632"),
        Option("ping", "bool", False, "ping the remote every ping-period"),
        Option("ping-period", "seconds", 1.0, "seconds between pings"),
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
        self.remote_url = hcf.get("remote-cc")
        sock = self.zctx.socket(zmq.DEALER)
        try:
            configure_socket(sock, hcf)
            curve_client(sock, hcf)
            sock.connect(self.remote_url)
        except BaseException:
            sock.close(0)
            raise
        self.stream = CCStream(
            sock,
            self.io_loop,
            self.stats,
            qmaxsize=QUEUE_UNCOUNTED,
            qmaxbytes=hcf.getbytes("queue-bytes", "32M"),
            name=hname,
        )
        self.stream.on_recv(self._on_remote)
        self._ratelog = RateLimitedLog(self.log)
        self.pinger = None
        if hcf.getboolean("ping", False):
            self.pinger = RemotePinger(
                self.remote_url,
                self.stream,
                self.stats,
                self.log,
                hcf.getfloat("ping-period", 1.0),
                seal=self.server.seal,
                open_body=self.server.open_body,
            )
            self.pinger.start()
        self.log.info("forwarding to %s", self.remote_url)

    def reads_body(self, msgtype: str) -> bool:
        return False

    def handle_msg(self, msg: CCMessage) -> None:
        self.stream.send_multipart(msg.frames)

    def _on_remote(self, frames: List[bytes]) -> None:
        if frames[0]:
            self.server.relay(frames)
            return
        # an empty route: addressed to this proxy itself (a pong), never relayed
        if self.pinger is not None:
            self.pinger.take(frames)
        else:
            self.stats.inc("count.dropped.unexpected")
            self._ratelog.warning("unexpected", "unexpected message from %s", self.remote_url)

    def stop(self):
        if self.pinger is not None:
            self.pinger.stop()
        self.stream.close()
