"""The audit trail: who asked for which task or database call, and what came of it.

One JSON object a line, appended to the file ``audit-log`` names (in the
taskrouter's, dbhandler's or task runner's section)::

    {"time": 1733330000.1, "event": "task.send", "signer": {"subject": "...",
     "serial": 4660, "issuer": "..."}, "task": "cc.task.sample", "hosts": ["db1"],
     "uid": "t1", "outcome": "forwarded"}

Fields: ``time`` (Unix seconds), ``event``, ``signer`` (subject, serial,
issuer of the verified signer; null when unsigned) and, as they apply,
``function`` or ``task`` (the task module), ``hosts``, ``uid``, ``outcome``
(``forwarded``, ``allowed``, ``started``, ``finished``, ``failed``,
``stopped``, ``forbidden``, ...), ``msg`` and ``duration`` (seconds).

Durability: each line is one ``write(2)`` on a file opened ``O_APPEND``
(lines of concurrent writers never interleave), made before the answer
that reports the action is sent; it survives the process crashing but not
the machine crashing (no fsync: the kernel writes it out within seconds).
logrotate moves the file and sends SIGHUP, on which it is reopened
(``debian/cc.logrotate``).  A file that cannot be opened at start is a
config error.  Later, a line that cannot be written (disk full, directory
removed) is counted (``audit.failed``) and logged, rate-limited, and the
file is reopened for the next; the action itself goes on: cc chooses
availability over a complete trail, so watch ``audit.failed``.
"""

import json
import logging
import os
import time
from typing import Any, Dict, Optional

import skytools
from skytools.config import ConfigError

from cc.options import Option
from cc.policy import signer_brief
from cc.ratelog import RateLimitedLog
from cc.stats import Stats

__all__ = ["AuditTrail", "AUDIT_OPTIONS"]

#: where a section's audit trail goes
AUDIT_OPTIONS = (
    Option("audit-log", "path", None, "JSON lines file of every task or call decided here"),
)

#: characters of a free-text field (``msg``) kept in a line
MAX_TEXT = 500


class AuditTrail:
    """An append-only JSON-lines file; :meth:`record` writes one event."""

    def __init__(self, path: str, stats: Stats, log: logging.Logger) -> None:
        self.path = path
        self.stats = stats
        self._ratelog = RateLimitedLog(log)
        self._fd: Optional[int] = None
        try:
            self._fd = self._open()
        except OSError as ex:  # at start a file that cannot be opened is a config error
            raise ConfigError("audit-log = %s: %s" % (path, ex)) from None

    @classmethod
    def from_config(
        cls, cf: skytools.Config, stats: Stats, log: logging.Logger
    ) -> Optional["AuditTrail"]:
        """The trail ``audit-log`` names in ``cf``'s section, or None without one."""
        path = cf.getfile("audit-log", "")
        return cls(path, stats, log) if path else None

    def reopen(self) -> None:
        """Open the file anew (logrotate moved it); a failure is counted, retried at the next."""
        self.close()
        try:
            self._fd = self._open()
        except OSError as ex:
            self._failed(ex)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def record(self, event: str, signer: Optional[Dict[str, Any]], **fields: Any) -> None:
        """Append one event; ``signer`` is the verified signer's details (None: unsigned)."""
        entry = {"time": round(time.time(), 3), "event": event, "signer": signer_brief(signer)}
        entry.update(fields)
        if isinstance(entry.get("msg"), str):
            entry["msg"] = entry["msg"][:MAX_TEXT]
        line = json.dumps(entry, default=str).encode("utf8") + b"\n"
        if self._fd is None:
            self.reopen()
            if self._fd is None:
                return
        try:
            os.write(self._fd, line)
        except OSError as ex:
            self._failed(ex)
            self.close()  # the next line opens it anew
            return
        self.stats.inc("audit.lines")

    def _failed(self, ex: OSError) -> None:
        self.stats.inc("audit.failed")
        self._ratelog.error("audit", "cannot write the audit trail %s: %s", self.path, ex)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
