"""Forward every PostgreSQL log record to the cc as a log message."""

import time
from typing import Any, Dict

from cc.daemon.plugins.pg_logforward import PgLogForwardPlugin
from cc.msgtypes import LogMessage
from cc.options import Option

#: PostgreSQL elevel names -> the log level names cc's log records use
LEVELS = {
    "LOG": "INFO",
    "INFO": "INFO",
    "NOTICE": "INFO",
    "WARNING": "WARNING",
    "COMMERROR": "ERROR",
    "ERROR": "ERROR",
    "FATAL": "CRITICAL",
    "PANIC": "CRITICAL",
}
#: record fields carried along unchanged
EXTRA_FIELDS = (
    "username",
    "database",
    "remotehost",
    "sqlerrcode",
    "sqlstate",
    "detail",
    "hint",
    "context",
    "debug_query_string",
)


class LogForward(PgLogForwardPlugin):
    """Sends each record as ``log.<level>`` (or ``msg-type``), level mapped from PostgreSQL's.

    ::

        [p:forward]
        module = cc.daemon.plugins.pg_logforward.forward
        # send as this type instead of log.<level>
        #msg-type =
    """

    LOG_FORMATS = ("netstr",)
    OPTIONS = (Option("msg-type", "str", None, "send as this type instead of log.<level>"),)

    def init(self, log_fmt: str) -> None:  # type: ignore[override]
        self.msg_type = self.cf.get("msg-type", "")

    def process(self, record: Dict[str, Any]) -> None:
        pg_level = record["elevel_text"]
        level = LEVELS.get(pg_level, "DEBUG")
        fields = {name: record.get(name) for name in EXTRA_FIELDS}
        msg = LogMessage(
            self.msg_type or "log." + level.lower(),
            log_level=level,
            pg_level=pg_level,
            service_type="postgres",
            job_name=self.daemon.job_name,
            log_msg=record.get("message") or "",
            log_time=time.time(),
            log_pid=0,
            log_line=0,
            log_function=record.get("funcname") or "",
            **fields,
        )
        self.daemon.publish(msg.to_message())
