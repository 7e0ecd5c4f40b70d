"""The message catalog: one class per message type, with the original's field names.

Each class knows its ``req`` (the type frame) and its required fields, so a
sender cannot forget one and every implementation agrees on the names::

    msg = EchoRequestMessage(target="tcp://10.0.0.1:22632").to_message()

Received messages are not forced through these classes: handlers read the
fields they need from :meth:`cc.message.CCMessage.get_body` and answer a
missing field with an ``error`` reply.
"""

import re
import time
from typing import Any, ClassVar, Dict, Optional, Sequence, Tuple

from cc.message import CCMessage, MessageError
from cc.routing import has_prefix

__all__ = [
    "BaseMessage",
    "ReplyMessage",
    "ErrorMessage",
    "EchoRequestMessage",
    "EchoResponseMessage",
    "LogMessage",
    "DatabaseMessage",
    "InfofileMessage",
    "LogtailMessage",
    "StatsMessage",
    "StateMessage",
    "DiscoveryMessage",
    "JobConfigRequestMessage",
    "JobConfigReplyMessage",
    "JobKeepaliveMessage",
    "TaskRegisterMessage",
    "TaskReregisterMessage",
    "TaskUnregisterMessage",
    "TaskSendMessage",
    "TaskReplyMessage",
    "TASK_UID_MAX",
    "ACKNOWLEDGED_PREFIXES",
    "wants_refusal",
    "TASK_UID_RE",
    "TASK_FINAL",
    "wants_reply",
]

#: types whose senders do not wait for an answer: never answered with an error
#: (answering ``error`` with ``error`` could loop between two servers)
NO_REPLY_PREFIXES = (
    "log",
    "pub",
    "error",
    "reply",
    "echo.response",
    "task.reply",
    "task.register",
    "task.reregister",
    "task.unregister",
    "job.keepalive",
)


def wants_reply(msgtype: Optional[str], route: Sequence[bytes]) -> bool:
    """Whether the sender of a message of ``msgtype`` waits for an answer.

    ``msgtype`` is None when the type frame was unreadable; then only a
    message carrying a return address beyond the peer's (a query id) is
    answered.
    """
    if not route:
        return False
    if msgtype is None:
        return len(route) > 1
    return not has_prefix(msgtype, NO_REPLY_PREFIXES)


#: types whose senders wait for an answer only when they ask for one (``ack``, with a query
#: id): the gate, which refuses a body unread, answers them whenever a query id is there
ACKNOWLEDGED_PREFIXES = ("pub.infofile", "pub.logtail")


def wants_refusal(msgtype: str, route: Sequence[bytes]) -> bool:
    """Whether the sender of a message the gate refused (unsigned, bad blob hash, ...) waits
    for the ``error``: as :func:`wants_reply`, and also an acknowledgeable type sent with a
    query id, whose ``ack`` the gate cannot read."""
    if wants_reply(msgtype, route):
        return True
    return len(route) > 1 and has_prefix(msgtype, ACKNOWLEDGED_PREFIXES)


class BaseMessage:
    """A message body under construction: ``req`` plus fields.

    Subclasses set ``REQ`` (the default type; a suffix may be given per
    message) and ``REQUIRED`` (fields that must be present).
    """

    REQ: ClassVar[str] = "?"
    REQUIRED: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, req: Optional[str] = None, **fields: Any) -> None:
        missing = [name for name in self.REQUIRED if fields.get(name) is None]
        if missing:
            raise MessageError(
                "missing-field", "%s needs field(s): %s" % (type(self).__name__, ", ".join(missing))
            )
        self.req = req or self.REQ
        self.fields: Dict[str, Any] = fields

    def to_message(self, route: Sequence[bytes] = (), blob: Optional[bytes] = None) -> CCMessage:
        return CCMessage.build(self.req, self.fields, route=route, blob=blob)


class ReplyMessage(BaseMessage):
    REQ = "reply"


class ErrorMessage(ReplyMessage):
    """Answer to a request that failed: ``msg`` for people, ``code`` for programs."""

    REQ = "error"
    REQUIRED = ("msg", "code")


class EchoRequestMessage(BaseMessage):
    REQ = "echo.request"
    REQUIRED = ("target",)


class EchoResponseMessage(BaseMessage):
    REQ = "echo.response"
    REQUIRED = ("orig_hostname", "orig_target", "orig_time")


class LogMessage(BaseMessage):
    """A log record; sent as ``log.<level in lower case>``."""

    REQ = "log.info"
    REQUIRED = ("log_level", "service_type", "job_name", "log_msg", "log_time", "log_pid")


def record_time(body: Dict[str, Any]) -> Tuple[float, time.struct_time]:
    """A log record's ``log_time`` (or ``time``) and its local time; 0 when absent or unusable.

    The sender's clock is data: a value time_t cannot hold must not crash a writer.
    """
    try:
        stamp = float(body.get("log_time") or body.get("time") or 0)
        return stamp, time.localtime(stamp)
    except (TypeError, ValueError, OverflowError, OSError):
        return 0.0, time.localtime(0)


class DatabaseMessage(BaseMessage):
    REQ = "db"
    REQUIRED = ("function",)


class InfofileMessage(BaseMessage):
    REQ = "pub.infofile"
    REQUIRED = ("mtime", "filename", "comp")


class LogtailMessage(BaseMessage):
    """A fragment of a log file at source offset ``fpos``.

    Beyond the original's fields: ``generation`` (truncations seen of the
    inode, default 0) is part of the file identity, ``origin`` is the source
    offset where the identity's copy begins, and ``ack`` asks the
    tailwriter for a ``reply.<type>`` once the fragment is written.
    """

    REQ = "pub.logtail"
    REQUIRED = ("filename", "comp", "fpos", "st_dev", "st_ino")


class StatsMessage(BaseMessage):
    """Counters of one period (``counters``) and since start (``totals``, an addition)."""

    REQ = "pub.stats"
    REQUIRED = ("job_name", "service_type", "counters", "period")


class StateMessage(BaseMessage):
    """What a process is and does (pid, started, version, config, role, routes, jobs ...)."""

    REQ = "pub.state"
    REQUIRED = ("job_name", "service_type", "state")


class DiscoveryMessage(BaseMessage):
    """What the discovery daemon's probes see on its host, by probe name."""

    REQ = "pub.discovery"
    REQUIRED = ("job_name", "probes")


class JobConfigRequestMessage(BaseMessage):
    REQ = "job.config"
    REQUIRED = ("job_name",)


class JobConfigReplyMessage(BaseMessage):
    REQ = "job.config"
    REQUIRED = ("job_name", "config")


class JobKeepaliveMessage(BaseMessage):
    REQ = "job.keepalive"
    REQUIRED = ("job_name",)


#: the uid of ``task.send.<uid>`` and ``task.reply.<uid>``: replies are routed by it
TASK_UID_MAX = 128
TASK_UID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,%d}$" % TASK_UID_MAX)
#: task statuses after which no further reply comes
TASK_FINAL = ("finished", "failed", "stopped")


class TaskRegisterMessage(BaseMessage):
    """A task runner's ``host``; ``runner_id`` (new per runner process) tells a restart."""

    REQ = "task.register"
    REQUIRED = ("host",)


class TaskReregisterMessage(BaseMessage):
    """To a task runner, from a proxy that moved to another hub: register again, at once."""

    REQ = "task.reregister"
class TaskUnregisterMessage(BaseMessage):
    """A task runner that stops: its ``host`` and ``runner_id`` are forgotten at once."""

    REQ = "task.unregister"
    REQUIRED = ("host", "runner_id")


class TaskSendMessage(BaseMessage):
    """A task for ``task_host``; sent as ``task.send.<uid>``.

    ``task_id`` is the sender's: any JSON scalar, echoed in the replies
    (cc-task uses the uid; the original's testmsg sends ``55``).
    """

    REQ = "task.send"
    REQUIRED = ("task_host", "task_handler", "task_id")


class TaskReplyMessage(BaseMessage):
    """Task status; sent as ``task.reply.<uid>``."""

    REQ = "task.reply"
    REQUIRED = ("task_id", "status")
