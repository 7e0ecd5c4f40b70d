"""A daemon's log records, sent to its cc as ``log.<level>`` messages.

The cc routes them like any client's (``log = h:locallog`` writes them into
the server's log), so a host's daemons need no log files of their own.
"""

import logging
import os
from typing import TYPE_CHECKING

from tornado.ioloop import IOLoop

from cc.message import CCMessage
from cc.msgtypes import LogMessage

if TYPE_CHECKING:  # pragma: no cover
    from cc.daemon.base import CCDaemon

__all__ = ["LogForwarder", "not_forwarded"]

#: the attribute LogForwarder sets on a record it sends
FORWARDED = "cc_forwarded"


class LogForwarder(logging.Handler):
    """Sends every log record of the daemon to its cc as a ``log.<level>`` message."""

    def __init__(self, daemon: "CCDaemon") -> None:
        super().__init__()
        self.daemon = daemon
        self.pid = os.getpid()
        self._busy = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._busy:  # a record logged while sending one (a drop warning) is not sent again
            return
        io_loop = self.daemon.io_loop
        cc = self.daemon.cc
        if io_loop is None or cc is None or cc.stream.closed:
            return
        try:
            msg = self.format_message(record)
        except Exception:
            self.handleError(record)
            return
        setattr(record, FORWARDED, True)
        if _on_thread_of(io_loop):
            self._send(msg)
        else:
            io_loop.add_callback(self._send, msg)

    def format_message(self, record: logging.LogRecord) -> CCMessage:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        return LogMessage(
            "log." + record.levelname.lower(),
            log_level=record.levelname,
            service_type=self.daemon.service_name,
            job_name=self.daemon.job_name,
            log_msg=text,
            log_time=record.created,
            log_pid=self.pid,
            log_line=record.lineno,
            log_function=record.funcName,
        ).to_message()

    def _send(self, msg: CCMessage) -> None:
        if self.daemon.cc is None or self.daemon.cc.stream.closed:
            return
        self._busy = True
        try:
            self.daemon.publish(msg)
        finally:
            self._busy = False


def not_forwarded(record: logging.LogRecord) -> bool:
    """A log filter: only the records :class:`LogForwarder` did not send (for the console of
    a daemon run by jobmgr, whose output jobmgr relays: each line once in the host's log)."""
    return not getattr(record, FORWARDED, False)


def _on_thread_of(io_loop: IOLoop) -> bool:
    try:
        return IOLoop.current(instance=False) is io_loop
    except RuntimeError:
        return False
