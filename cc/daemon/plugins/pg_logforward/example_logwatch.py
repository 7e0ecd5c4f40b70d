"""An example pg_logforward plug-in that watches records, as the original shipped.

:class:`ProcessErrors` turns the records an operator cares about into
``log.add`` calls on the configuration database (``db.<msg-suffix>``), the
way the original's ``LogWatch_ProcessErrors`` did: lock waits become
warnings, errors and fatal errors go on as they are, and ordinary ``LOG``
lines are sent at most once per ``error_reset_interval``, so that a busy
server does not flood the database.  Copy it to write your own watcher.
"""

import json
import re
import socket
import time
from typing import Any, Dict, Optional

from cc.daemon.plugins.pg_logforward import PgLogForwardPlugin
from cc.message import is_valid_type
from cc.msgtypes import DatabaseMessage
from cc.options import Option

__all__ = ["ProcessErrors"]

#: PostgreSQL's deadlock_timeout report: "process 123 still waiting for ShareLock on relation ..."
LOCK_WAIT_RE = re.compile(r"^process \d+ still waiting for (\w+) on ")
#: levels that go to the database; others are dropped
FORWARDED = ("INFO", "WARNING", "ERROR", "FATAL")


class ProcessErrors(PgLogForwardPlugin):
    """Sends lock waits, errors and (rate-limited) LOG records as ``log.add`` database calls.

    The call is ``log.add(hostname, null, 'postgres_monitoring', level,
    database, '<user> <remotehost>: <message>')`` as a ``db.<msg-suffix>``
    message that wants no answer.

    ::

        [p:logwatch]
        module = cc.daemon.plugins.pg_logforward.example_logwatch
        # seconds between two LOG records sent (errors are always sent)
        #error_reset_interval = 300
        # the message type is db.<msg-suffix>
        #msg-suffix = confdb
    """

    LOG_FORMATS = ("netstr",)
    OPTIONS = (
        Option("error_reset_interval", "seconds", 300, "seconds before an error is sent again"),
        Option("msg-suffix", "str", "confdb", "appended to the message type"),
    )

    def init(self, log_fmt: str) -> None:  # type: ignore[override]
        self.reset_interval = self.cf.getfloat("error_reset_interval", 300)
        suffix = self.cf.get("msg-suffix", "confdb")
        if suffix and not is_valid_type(suffix):
            raise ValueError("msg-suffix %r is not a valid message type part" % suffix)
        self.msg_type = "db.%s" % suffix if suffix else "db"
        self.hostname = socket.gethostname()
        self.last_sent: Optional[float] = None

    def process(self, record: Dict[str, Any]) -> None:
        message = record.get("message") or ""
        lock = LOCK_WAIT_RE.match(message) if record.get("funcname") == "ProcSleep" else None
        level = self.level_of(record.get("elevel_text"), lock is not None)
        if level is None:
            self.daemon.stats.inc("logwatch.skipped")
            return
        if lock:
            message = "%s lock waits" % lock.group(1)
        text = "%s %s: %s" % (record.get("username"), record.get("remotehost"), message)
        params = [self.hostname, None, "postgres_monitoring", level]
        params += [record.get("database") or "postgres", text]
        msg = DatabaseMessage(self.msg_type, function="log.add", params=json.dumps(params))
        self.daemon.publish(msg.to_message())
        self.last_sent = time.monotonic()
        self.daemon.stats.inc("logwatch.sent")

    def level_of(self, pg_level: Optional[str], lock_wait: bool) -> Optional[str]:
        """The level a record is sent at, or None if it is not sent."""
        if pg_level == "LOG":
            if lock_wait:
                return "WARNING"
            last = self.last_sent
            quiet = last is None or time.monotonic() - last >= self.reset_interval
            return "INFO" if quiet else None
        return pg_level if pg_level in FORWARDED else None
