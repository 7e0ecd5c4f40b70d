"""Answers every message with a reply naming this handler section and its ``tag`` option."""

from cc.handler import CCHandler

CC_HANDLER = "Tagger"


class Tagger(CCHandler):
    def __init__(self, hname, hcf, ccscript):
        super().__init__(hname, hcf, ccscript)
        self.tag = hcf.get("tag", "")

    def handle_msg(self, msg):
        self.reply(msg, "reply", handler=self.hname, tag=self.tag, instance=id(self))

    def stop(self):
        self.log.info("stopping tagger %s", self.tag)
