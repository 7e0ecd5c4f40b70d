"""disposer: drop messages on purpose, and count them."""

from cc.handler import CCHandler
from cc.message import CCMessage

CC_HANDLER = "Disposer"


class Disposer(CCHandler):
    """Discards everything routed to it (``disposed_count``, ``disposed_bytes``).

    ::

        [h:disposer]
        handler = disposer
    """

    CC_ROLES = ("local", "proxy", "end-service")

    def reads_body(self, msgtype: str) -> bool:
        return False

    def handle_msg(self, msg: CCMessage) -> None:
        self.stats.inc("disposed_count")
        self.stats.inc("disposed_bytes", msg.size)
