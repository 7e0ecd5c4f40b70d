"""statswriter: keep the latest ``pub.stats`` / ``pub.state`` per host and job, as files."""

import asyncio
import concurrent.futures
import json
import os
import stat
from typing import Any, Dict, Optional, Tuple

from cc.files.atomic import write_atomic
from cc.files.paths import UnsafePath, clean_name, safe_join
from cc.handler import CCHandler
from cc.message import CCMessage
from cc.options import REQUIRED, Option
from cc.ratelog import RateLimitedLog
from cc.routing import has_prefix
from cc.statsstore import BadStats, StatsStore

CC_HANDLER = "StatsWriter"


class StatsWriter(CCHandler):
    """Writes ``<dstdir>/<hostname>/<job_name>.stats`` and ``.state`` (JSON, atomically).

    The latest report of every (host, job) is also what the server's
    ``metrics-http`` page shows.  Files are written on a worker thread; while
    one batch is being written, newer reports replace older ones not yet
    written, so a slow disk costs freshness, never memory.  A file holds one
    top-level key a line, sorted, each value compact JSON (what a report
    costs to write is then the C encoder's, not the indenting one's).
    Files are written at most every ``write-interval`` seconds: a report
    coming sooner after the last write waits (with every other one that
    comes meanwhile) until then, so a host reporting every second costs
    one file rewrite per interval, not one per report; the server's
    ``/metrics`` has the latest at once.

    ::

        [h:statswriter]
        handler = statswriter
        dstdir = ~/stats
        # hosts x jobs kept; reports of new ones beyond this are dropped and counted
        #max-entries = 10000
        # seconds between writes at the least (a file is then at most this much behind)
        #write-interval = 10
    """

    CC_ROLES = ("end-service",)
    OPTIONS = (
        Option("dstdir", "path", REQUIRED, "directory of the stats files", example="~/stats"),
        Option("max-entries", "int", 10000, "jobs remembered, at the most"),
        Option("write-interval", "seconds", 10, "seconds between writes at the least: a"
               " report coming sooner waits, newer ones replace it; 0: each at once"),
    )  # fmt: skip

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self.dstdir = hcf.getfile("dstdir")
        self.store = StatsStore(hcf.getint("max-entries", 10000))
        #: what waits to be written: (host, job, relpath) -> the report, as written
        self._dirty: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
        #: file names already checked on the loop (each is checked again when written) by
        #: (host, job, kind); bounded by the store's entries, two kinds each
        self._paths: Dict[Tuple[str, str, str], str] = {}
        self._writing: Optional[asyncio.Future] = None
        self.write_interval = hcf.getfloat("write-interval", 10)
        #: loop time the last write began; the timer of the next while it waits
        self._last_write = float("-inf")
        self._next_write: Optional[asyncio.TimerHandle] = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=hname)
        self._ratelog = RateLimitedLog(self.log)
        server.add_stats_store(self.store)

    def handle_msg(self, msg: CCMessage) -> None:
        body = msg.get_body()
        foreign = self.server.foreign_host(msg.signer, body.get("hostname"))
        if foreign:  # where the server verifies, a host reports only about itself
            self.stats.inc("statswriter.forbidden")
            self._ratelog.warning("forbidden", "refusing %s: %s", msg.type, foreign)
            return
        try:
            entry = self.store.update(msg.type, body)
            if entry is None:
                self.stats.inc("statswriter.dropped_full")
                self._ratelog.warning("full", "too many hosts x jobs, dropping %s", msg.type)
                return
            kind = "stats" if has_prefix(msg.type, ("pub.stats",)) else "state"
            relpath = self._paths.get((entry.host, entry.job, kind))
            if relpath is None:
                relpath = "%s/%s.%s" % (
                    clean_name(entry.host, "hostname").replace("/", "_"),
                    clean_name(entry.job, "job_name").replace("/", "_"),
                    kind,
                )
                safe_join(self.dstdir, relpath)  # refuse early; checked again when written
                if len(self._paths) >= 2 * self.store.max_entries:
                    self._paths.clear()
                self._paths[(entry.host, entry.job, kind)] = relpath
        except (BadStats, UnsafePath) as ex:
            self.stats.inc("statswriter.invalid")
            self._ratelog.warning(
                "invalid", "bad %s from %s: %s", msg.type, body.get("hostname"), ex
            )
            return
        # a snapshot: the store replaces an entry's dicts on update, never changes them
        self._dirty[(entry.host, entry.job, relpath)] = entry.as_dict(kind)
        self.stats.inc("statswriter." + kind)
        self._kick()

    def _kick(self) -> None:
        """Write what waits, now or when write-interval has passed since the last write."""
        if self._writing is not None or self._next_write is not None or not self._dirty:
            return
        loop = asyncio.get_running_loop()
        due = self._last_write + self.write_interval
        if loop.time() < due:
            self._next_write = loop.call_at(due, self._kick_due)
            return
        self._last_write = loop.time()
        batch, self._dirty = self._dirty, {}
        self._writing = loop.run_in_executor(self._executor, self._write, batch)
        self._writing.add_done_callback(self._written)

    def _kick_due(self) -> None:
        self._next_write = None
        self._kick()

    def _written(self, future: asyncio.Future) -> None:
        self._writing = None
        written, failed = future.result()
        self.stats.inc("statswriter.written_files", written)
        if failed:
            self.stats.inc("statswriter.write_failed", failed)
        self._kick()

    def _write(self, batch: Dict[Tuple[str, str, str], Dict[str, Any]]) -> Tuple[int, int]:
        """Worker thread: write each file atomically; count what failed.

        A file name is ``host/job.kind``, one component each (checked on the
        loop), so a file stays inside ``dstdir`` when its host's directory is
        a real directory right under ``dstdir``'s real path: that is checked
        once per host and batch (one ``lstat``), not per file.  The file
        itself is replaced by a rename, which never follows a symlink.
        """
        written = failed = 0
        dirs: Dict[str, str] = {}  # host directory name -> its checked path
        root = ""
        for (_host, _job, relpath), report in batch.items():
            try:
                if not root:
                    os.makedirs(self.dstdir, exist_ok=True)
                    root = os.path.realpath(self.dstdir)
                hostdir, name = relpath.split("/")
                path = dirs.get(hostdir)
                if path is None:
                    path = dirs[hostdir] = _real_dir(root, hostdir)
                write_atomic(os.path.join(path, name), encode(report))
                written += 1
            except (OSError, UnsafePath, ValueError) as ex:
                failed += 1
                self._ratelog.error("write", "cannot write %s: %s", relpath, ex)
        return written, failed

    async def stop(self) -> None:
        """Finish what was received (the server bounds how long this may take)."""
        self.server.remove_stats_store(self.store)
        if self._next_write is not None:  # what waits for its time is written now
            self._next_write.cancel()
            self._next_write = None
        self.write_interval = 0
        self._kick()
        while self._writing is not None:
            await asyncio.sleep(0.01)
        self._executor.shutdown(wait=True)


def _real_dir(root: str, name: str) -> str:
    """``root/name``, made if missing; UnsafePath unless a directory (a symlink is not)."""
    path = os.path.join(root, name)
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise UnsafePath("%s is not a directory of its own (a symlink?)" % path)
    return path


def encode(report: Dict[str, Any]) -> bytes:
    """``report`` as a file's JSON: one top-level key a line, sorted, values compact."""
    dumps = json.dumps
    lines = [" %s: %s" % (dumps(k), dumps(report[k], sort_keys=True)) for k in sorted(report)]
    return ("{\n" + ",\n".join(lines) + "\n}").encode("utf8")
