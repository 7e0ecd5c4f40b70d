"""logwriter: append received log records to per-host, per-job files under a directory."""

import collections
import functools
import os
import threading
import time
from typing import Any, Dict, List, Optional, TextIO, Tuple

from cc.files.paths import UnsafePath, plain_name, safe_join
from cc.files.workerpool import HandOver, WorkerPool
from cc.handler import CCHandler
from cc.message import CCMessage
from cc.options import REQUIRED, Option
from cc.msgtypes import record_time
from cc.policy import FORBIDDEN
from cc.ratelog import RateLimitedLog

CC_HANDLER = "LogWriter"


#: what a field's control characters and backslashes become in a line: one line per record
ESCAPES = {c: "\\x%02x" % c for c in list(range(32)) + [127] if c != ord("\t")}
ESCAPES.update({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r"})
#: characters of a field other than the message kept in a line
MAX_FIELD = 200
#: file names remembered by sender (forgotten all at once beyond this)
NAMES_KEPT = 10000
#: lines gathered on the loop at the most: more go to the threads at once
HAND_OVER_LINES = 1000


def escaped(value: Any, limit: Optional[int] = None) -> str:
    """``value`` as text for one line: control characters and backslashes escaped."""
    text = str(value)
    if limit is not None:
        text = text[:limit]
    return text.translate(ESCAPES)


#: the last second formatted, and how: records come in time order, many a second
_last_second: List[Any] = [None, ""]


def format_line(body: Dict[str, Any]) -> str:
    """One line per record: time, level, host, job, pid, message (every field escaped)."""
    log_time = body.get("log_time") or body.get("time") or 0
    second = log_time // 1 if type(log_time) is float else None
    if second is not None and second == _last_second[0]:
        stamp = _last_second[1]
    else:
        log_time, local = record_time(body)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", local)
        if second is not None and log_time // 1 == second:  # time_t held it
            _last_second[:] = [second, stamp]
    fields = [escaped(body.get(key, "?"), MAX_FIELD)
              for key in ("log_level", "hostname", "job_name", "log_pid")]  # fmt: skip
    return "%s.%03d %s %s %s[%s] %s\n" % (
        stamp,
        int(log_time * 1000) % 1000,
        *fields,
        escaped(body.get("log_msg", "")),
    )


def component(value: object, what: str) -> str:
    """A message field used as one path component: non-empty, no separators or controls."""
    name = plain_name(value, what)
    if "/" in name:
        raise UnsafePath("%s %r contains a path separator" % (what, name))
    return name


class LogWriter(CCHandler):
    """Appends each ``log.*`` record as one line to a file under ``dstdir``.

    The file name comes from ``dstmask`` (placeholders ``hostname``,
    ``job_name``, ``service_type``); names that would leave ``dstdir`` are
    refused and counted (``logwriter.rejected``); so are names with control
    characters, and every field of a line is escaped (one line per record).
    Where the server verifies, a signer writes only as its own host (its
    certificate's CN is the ``hostname``), else ``logwriter.forbidden``.  Files stay open and are
    reopened on SIGHUP, so logrotate can move them.  Writing runs on
    ``worker-threads`` threads (one file always on the same thread), each
    keeping at most ``max-open-files`` open; at most ``queue-size`` records
    per thread wait (``queue-size`` times ``worker-threads`` in all), more
    are dropped and counted (``logwriter.dropped``).  Records gather on the
    loop for 10 ms (or 1000 records) and go to their threads as one job per
    file, written with one ``write``; a thread writes what waits for it,
    then flushes each file it wrote once.

    ::

        [h:logwriter]
        handler = logwriter
        dstdir = /var/log/cc/hosts
        #dstmask = %%(hostname)s/%%(job_name)s.log
        #worker-threads = 2
        #queue-size = 10000
        #max-open-files = 1000
    """

    CC_ROLES = ("end-service",)
    OPTIONS = (
        Option("dstdir", "path", REQUIRED, "directory the logs go to", example="~/logs"),
        Option("dstmask", "str", "%(hostname)s/%(job_name)s.log", "file name under dstdir"),
        Option("max-open-files", "int", 1000, "files kept open, at the most"),
        Option("worker-threads", "int", 2, "threads writing files"),
        Option("queue-size", "int", 10000, "lines waiting, at the most"),
    )  # fmt: skip

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self.dstdir = os.path.abspath(os.path.expanduser(hcf.get("dstdir")))
        self.mask = hcf.get("dstmask", "%(hostname)s/%(job_name)s.log")
        self.max_open = max(1, hcf.getint("max-open-files", 1000))
        self.ratelog = RateLimitedLog(self.log)
        self.local = threading.local()
        threads = hcf.getint("worker-threads", 2)
        queue_size = hcf.getint("queue-size", 10000)
        self.pool = WorkerPool(
            hname, threads, queue_size, self.io_loop, after_batch=self.flush_files
        )
        #: records handed to the threads and not written yet, and how many may be
        self.waiting = 0
        self.max_waiting = threads * queue_size
        #: lines gathered by file, handed to the threads together (:class:`HandOver`)
        self._pending: Dict[str, List[str]] = {}
        self._gathered = 0
        self._handover = HandOver(self.hand_over)
        #: file names of the senders seen: (hostname, job_name, service_type) -> relpath
        self._names: Dict[Tuple[Any, Any, Any], str] = {}

    def relpath(self, body: Dict[str, Any]) -> str:
        """The file ``body``'s record goes to (UnsafePath, KeyError, ValueError, TypeError)."""
        key = (body.get("hostname"), body.get("job_name"), body.get("service_type"))
        try:
            return self._names[key]
        except KeyError:
            pass
        except TypeError:  # a field that is no name (a list): checked below, not remembered
            key = None  # type: ignore[assignment]
        fields = {
            "hostname": component(body.get("hostname"), "hostname"),
            "job_name": component(body.get("job_name"), "job_name"),
            "service_type": component(body.get("service_type") or "-", "service_type"),
        }
        relpath = self.mask % fields
        if key is not None:
            if len(self._names) >= NAMES_KEPT:
                self._names.clear()
            self._names[key] = relpath
        return relpath

    def handle_msg(self, msg: CCMessage) -> None:
        body = msg.get_body()
        foreign = self.server.foreign_host(msg.signer, body.get("hostname"))
        if foreign:
            self._refuse(FORBIDDEN, "refusing log record: %s", foreign)
            return
        try:
            relpath = self.relpath(body)
        except UnsafePath as ex:
            self._refuse("rejected", "suspicious file path, skipping: %s", ex)
            return
        except (KeyError, ValueError, TypeError) as ex:
            self._refuse("invalid", "cannot name a log file for %s: %s", msg.type, ex)
            return
        pending = self._pending
        lines = pending.get(relpath)
        if lines is None:
            pending[relpath] = [format_line(body)]
        else:
            lines.append(format_line(body))
        self._gathered += 1
        if self._gathered >= HAND_OVER_LINES:
            self._handover.now()
        else:
            self._handover.due()

    def hand_over(self) -> None:
        """The lines gathered to the threads, one job per thread."""
        pending, self._pending = self._pending, {}
        self._gathered = 0
        jobs: Dict[int, List[Tuple[str, List[str]]]] = {}
        for relpath, lines in pending.items():
            n = len(lines)
            if self.waiting + n > self.max_waiting:
                self._refuse(
                    "dropped", "worker queue full, dropping log records for %s", relpath, count=n
                )
                continue
            self.waiting += n
            jobs.setdefault(self.pool.thread_of(relpath), []).append((relpath, lines))
        for thread, files in jobs.items():
            n = sum(len(lines) for _, lines in files)
            done = functools.partial(self._done, n)
            if not self.pool.submit_to(thread, done, self.write_files, files):
                self.waiting -= n
                self._refuse("dropped", "worker queue full, dropping %d log records", n, count=n)

    def _refuse(self, what: str, fmt: str, *args: Any, count: int = 1) -> None:
        self.stats.inc("logwriter." + what, count)
        self.ratelog.error(what, fmt, *args)

    def on_sighup(self) -> None:
        self._handover.now()
        self.pool.broadcast(self._closed, self.close_files)

    def stop(self):
        self._handover.now()
        self.pool.broadcast(self._closed, self.close_files)
        return self.pool.stop()

    # -- on a worker thread ----------------------------------------------------------

    def _files(self) -> "collections.OrderedDict[str, TextIO]":
        files = getattr(self.local, "files", None)
        if files is None:
            files = self.local.files = collections.OrderedDict()
            self.local.dirty = set()  # written since the last flush
        return files

    def write_files(self, files: List[Tuple[str, List[str]]]) -> List[Tuple[int, Any]]:
        """Append each file's lines with one write; per file, its line count and the
        characters written or the error."""
        results: List[Tuple[int, Any]] = []
        for relpath, lines in files:
            try:
                results.append((len(lines), self.write_line(relpath, "".join(lines))))
            except Exception as ex:
                results.append((len(lines), ex))
        return results

    def write_line(self, relpath: str, line: str) -> int:
        files = self._files()
        f = files.get(relpath)
        if f is None:
            path = safe_join(self.dstdir, relpath)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if len(files) >= self.max_open:
                files.popitem(last=False)[1].close()
            f = files[relpath] = open(path, "a", encoding="utf8", errors="backslashreplace")
        else:
            files.move_to_end(relpath)
        f.write(line)
        self.local.dirty.add(f)
        return len(line)

    def flush_files(self) -> None:
        """End of a batch: what the thread wrote goes to the kernel, one write per file."""
        dirty = getattr(self.local, "dirty", None)  # none before the first record
        while dirty:
            f = dirty.pop()
            if not f.closed:
                f.flush()

    def close_files(self) -> int:
        files = self._files()
        count = len(files)
        while files:
            files.popitem()[1].close()
        return count

    # -- back on the loop -------------------------------------------------------------

    def _done(
        self, total: int, result: Optional[List[Tuple[int, Any]]], error: Optional[BaseException]
    ) -> None:
        """A thread's job of ``total`` records done: per file, ``count`` records written or
        the error; ``error`` if a flush failed (what the batch wrote may be lost)."""
        self.waiting -= total
        for count, outcome in result or ():
            if isinstance(outcome, UnsafePath):
                self._refuse("rejected", "suspicious file path, skipping: %s", outcome, count=count)
            elif isinstance(outcome, BaseException):
                self._refuse("failed", "cannot write log records: %s", outcome, count=count)
            else:
                self.stats.inc("logwriter.lines", count)
                self.stats.inc("logwriter.bytes", outcome)
        if error is not None:
            self._refuse("failed", "cannot write log records: %s", error)

    def _closed(self, result: Optional[int], error: Optional[BaseException]) -> None:
        if error is not None:
            self.log.error("closing log files failed: %s", error)
        else:
            self.log.debug("closed %s log files", result)
