"""A handler allowed only in the remote role, like the original's end-service handlers."""

from cc.handler import CCHandler

CC_HANDLER = "RemoteOnly"


class RemoteOnly(CCHandler):
    CC_ROLES = ("remote",)

    def handle_msg(self, msg):
        self.reply(msg, "reply." + msg.type, handler=self.hname)
