"""echo: answer ``echo.request``, and optionally watch other ccs with pings."""

from typing import List

import zmq

from cc.handler import CCHandler
from cc.message import CCMessage
from cc.msgtypes import wants_reply
from cc.options import Option
from cc.ping import RemotePinger
from cc.ratelog import RateLimitedLog
from cc.stream import CCStream

CC_HANDLER = "Echo"


class Echo(CCHandler):
    """Answers ``echo.request`` with ``echo.response`` along the request's route.

    With ``ping-remotes``, also pings each listed cc every ``ping-period``
    seconds and logs when one stops answering.

    ::

        [h:echo]
        handler = echo
        #ping-remotes = tcp://10.0.0.2:22632, tcp://10.0.0.3:22632
        #ping-period = 1
    """

    CC_ROLES = ("local", "proxy", "end-service")
    OPTIONS = (
        Option("ping-remotes", "list", None, "ccs pinged every ping-period"),
        Option("ping-period", "seconds", 1.0, "seconds between pings"),
    )  # fmt: skip

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self._ratelog = RateLimitedLog(self.log)
        period = hcf.getfloat("ping-period", 1.0)
        self.pingers: List[RemotePinger] = []
        for url in hcf.getlist("ping-remotes", []):
            sock = self.zctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.SNDHWM, 1)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(url)
            stream = CCStream(
                sock, self.io_loop, self.stats, qmaxsize=1, name="%s:%s" % (hname, url)
            )
            pinger = RemotePinger(
                url,
                stream,
                self.stats,
                self.log,
                period,
                seal=self.server.seal,
                open_body=self.server.open_body,
            )
            stream.on_recv(pinger.take)
            pinger.start()
            self.pingers.append(pinger)

    def handle_msg(self, msg: CCMessage) -> None:
        if msg.type != "echo.request":
            self._ratelog.warning("unknown:" + msg.type, "unknown msg: %s", msg.type)
            if wants_reply(msg.type, msg.route):
                self.reply_error(
                    msg, "echo takes echo.request, not %s" % msg.type, "unsupported"
                )
            return
        body = msg.get_body()
        self.reply(
            msg,
            "echo.response",
            orig_hostname=body.get("hostname"),
            orig_target=body.get("target"),
            orig_time=body.get("time"),
        )

    def stop(self):
        for pinger in self.pingers:
            pinger.stop()
            pinger.stream.close()
