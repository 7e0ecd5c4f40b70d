"""locallogger: write received log records into this server's own log."""

import time

from cc.handler import CCHandler
from cc.message import CCMessage
from cc.msgtypes import record_time

CC_HANDLER = "LocalLogger"


class LocalLogger(CCHandler):
    """Logs each ``log.*`` record at INFO as ``[job@host] HH:MM:SS,mmm LEVEL message``.

    The time is the record's own (``log_time``), in local time.  A record
    whose signature the server verified ends with ``(signed by <CN>)``.

    ::

        [h:locallog]
        handler = locallogger
    """

    CC_ROLES = ("local", "proxy", "end-service")

    def handle_msg(self, msg: CCMessage) -> None:
        body = msg.get_body()
        if "log_level" not in body:
            self.log.info("non-log msg: %s", msg.type)
            return
        log_time, local = record_time(body)
        stamp = time.strftime("%H:%M:%S", local)
        signer = msg.signer
        self.log.info(
            "[%s@%s] %s,%03d %s %s%s",
            body.get("job_name"),
            body.get("hostname"),
            stamp,
            int(log_time * 1000) % 1000,
            body.get("log_level"),
            body.get("log_msg"),
            " (signed by %s)" % signer.get("CN", signer["subject"]) if signer else "",
        )
