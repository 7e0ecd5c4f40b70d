"""Keeps what it is given and whether it was stopped; ``fail-init`` makes creating it fail,
``crash`` makes handle_msg raise, ``reads-body = no`` makes it pass bodies on unread."""

from cc.handler import CCHandler
from cc.options import Option

CC_HANDLER = "Recorder"


class Recorder(CCHandler):
    OPTIONS = (
        Option("fail-init", "bool", False, "raise while being created"),
        Option("crash", "bool", False, "raise on every message"),
        Option("reads-body", "bool", True, "whether it reads bodies"),
        Option("forward-to", "str", None, "a section it depends on"),
    )
    REFERENCES = ("forward-to",)

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        if hcf.getboolean("fail-init", False):
            raise ValueError("%s: told to fail" % hname)
        self.crash = hcf.getboolean("crash", False)
        self.reads = hcf.getboolean("reads-body", True)
        self.target = server.get_handler(hcf.get("forward-to")) if hcf.get("forward-to", "") else None
        self.got = []
        self.stopped = False

    def reads_body(self, msgtype):
        return self.reads

    def handle_msg(self, msg):
        if self.crash:
            raise RuntimeError("recorder told to crash on %s" % msg.type)
        self.got.append(msg)

    def stop(self):
        self.stopped = True
