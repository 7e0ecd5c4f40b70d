"""A handler that raises on every message: the server must contain it."""

from cc.handler import CCHandler

CC_HANDLER = "Crasher"


class Crasher(CCHandler):
    def handle_msg(self, msg):
        raise RuntimeError("crasher got %s" % msg.type)
