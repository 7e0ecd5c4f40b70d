"""Answers every message with a reply naming this handler section and its ``tag`` option.

``stop-delay`` (seconds) makes its stop() take that long, as a handler finishing work would.
"""

import asyncio

from cc.handler import CCHandler

CC_HANDLER = "Tagger"


class Tagger(CCHandler):
    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self.tag = hcf.get("tag", "")
        self.stop_delay = hcf.getfloat("stop-delay", 0)

    def handle_msg(self, msg):
        self.reply(msg, "reply", handler=self.hname, tag=self.tag, instance=id(self))

    def stop(self):
        self.log.info("stopping tagger %s", self.tag)
        return asyncio.sleep(self.stop_delay) if self.stop_delay else None
