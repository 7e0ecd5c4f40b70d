"""filter: pass on only the message types a pattern list lets through."""

from fnmatch import fnmatchcase

from cc.handler import CCHandler
from cc.message import CCMessage
from cc.options import REQUIRED, Option

CC_HANDLER = "Filter"


class Filter(CCHandler):
    """Forwards to ``forward-to`` what ``include`` admits and ``exclude`` does not.

    Patterns are shell-style and case-sensitive against the whole type
    (``pub.info*`` matches ``pub.infofile``).  An empty ``include`` admits
    everything; ``exclude`` wins over ``include``.

    ::

        [h:filter]
        handler = filter
        forward-to = h:proxy
        #include = pub.info*, log.*
        #exclude = log.debug
    """

    CC_ROLES = ("local", "proxy", "end-service")
    OPTIONS = (
        Option("forward-to", "str", REQUIRED, "the handler section passed messages go to",
               example="h:proxy"),
        Option("include", "list", None, "type patterns let through (empty: all)"),
        Option("exclude", "list", None, "type patterns dropped"),
    )  # fmt: skip
    REFERENCES = ("forward-to",)

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self.target = server.get_handler(hcf.get("forward-to"))
        self.include = hcf.getlist("include", [])
        self.exclude = hcf.getlist("exclude", [])

    def admits(self, msgtype: str) -> bool:
        if any(fnmatchcase(msgtype, pat) for pat in self.exclude):
            return False
        return not self.include or any(fnmatchcase(msgtype, pat) for pat in self.include)

    def reads_body(self, msgtype: str) -> bool:
        return self.admits(msgtype) and self.target.reads_body(msgtype)

    def handle_msg(self, msg: CCMessage) -> None:
        size = msg.size
        self.stats.inc("filter.count")
        self.stats.inc("filter.bytes", size)
        if not self.admits(msg.type):
            result = "dropped"
        else:
            result = self.server.forward(self.target, msg)
        self.stats.inc("filter.count." + result)
        self.stats.inc("filter.bytes." + result, size)
