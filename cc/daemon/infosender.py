"""infosender: send files matching a mask as ``pub.infofile`` when they change.

``python -m cc.daemon.infosender config.ini d:infosender``
"""

import asyncio
import glob
import json
import os
import time
from typing import Dict, List, Optional, Tuple

from cc.daemon import CCDaemon, run_daemon
from cc.files.atomic import write_atomic
from cc.files import infomsg
from cc.files.infomsg import InfofileEncoder
from cc.files.watch import DirWatch
from cc.message import CCMessage
from cc.options import REQUIRED, Option

CC_DAEMON = "InfofileCollector"

#: seconds a stopping infosender waits for answers (the daemon base allows 5 in all)
STOP_WAIT = 3.0

#: writer answers that sending the same version again cannot change
FINAL_ERRORS = ("too-large", "rejected")

#: what identifies a version of a file: (size, mtime in ns)
Version = Tuple[int, int]


class Scan:
    """What one scan saw of a file, and whether it was already waiting to be sent."""

    __slots__ = ("seen", "pending")

    def __init__(self, seen: Version) -> None:
        self.seen = seen
        self.pending = False


def stat_files(pattern: str) -> Dict[str, Version]:
    found = {}
    for path in glob.glob(pattern):
        try:
            st = os.stat(path)
        except OSError:
            continue  # vanished between glob and stat
        if os.path.isfile(path):
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


def read_file(path: str, limit: int) -> Optional[Tuple[Version, float, bytes]]:
    """Contents with the version read; None if the file changed while being read (or grew
    past ``limit`` bytes since it was seen: never more is read)."""
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        data = f.read(limit + 1)
        after = os.fstat(f.fileno())
    version = (before.st_size, before.st_mtime_ns)
    if version != (after.st_size, after.st_mtime_ns) or len(data) != before.st_size:
        return None
    return version, before.st_mtime, data


class InfofileCollector(CCDaemon):
    """Sends each file matching ``infodir/infomask`` once it is stable, and again on change.

    A changed file is sent when one scan (every ``scan-period`` seconds)
    found it unchanged, or at the latest one scan after it was first seen
    changed, so files rewritten faster than the scan still get sent.  What
    was sent (size and mtime per file) is kept in ``state-file`` (default:
    the pidfile with ``.state``), so a restart resends only what changed.
    File reads and compression run off the loop.  A file that is always
    changing is sent as read; producers should replace files atomically
    (write and rename) so that what is read is always a whole version.

    With ``ack`` (the default) each version is sent with ``ack`` set and
    counts as sent only once the infowriter has answered; one that got an
    error or no answer within ``ack-timeout`` seconds is sent again by a later
    scan, so a version lost with a killed proxy or writer still arrives, unless
    the answer says no resend can help (``too-large``, ``rejected``): that
    version waits for the file to change, as does a file larger than
    ``max-file-size`` (logged, counted ``infosender.too_large``, never read:
    it would not fit a message).  At
    most ``window`` files wait for an answer.  ``ack = no`` sends and forgets,
    as the original did (for infowriters that never answer).

    ::

        [d:infosender]
        module = cc.daemon.infosender
        infodir = /var/lib/postgresql/info
        infomask = *.info
        # seconds between scans while files change; once all is sent, with inotify, the next
        # scan waits until infodir changes (at most 10 s)
        #scan-period = 1
        #state-file = ~/pid/infosender.state
        #compression = none
        #compression-level =
        #msg-suffix =
        #use-blob = yes
        #ack = yes
        #ack-timeout = 10
        #window = 100
        #max-file-size = 32M
    """

    OPTIONS = (
        Option("infodir", "path", REQUIRED, "directory of the files", example="~/info"),
        Option("infomask", "str", REQUIRED, "glob of the files sent", example="*.info"),
        Option("scan-period", "seconds", 1.0, "seconds between scans"),
        Option("state-file", "path", None, "what was sent (default: beside the pidfile)"),
        Option("ack", "bool", True, "wait for the end-service's acknowledgement"),
        Option("ack-timeout", "seconds", 10.0, "seconds to wait for it"),
        Option("window", "int", 100, "files sent and not acknowledged, at the most"),
        Option("max-file-size", "bytes", "32M", "files larger than this are not sent"),
    ) + infomsg.OPTIONS  # fmt: skip

    def reload(self) -> None:
        super().reload()
        self.pattern = os.path.join(self.cf.getfile("infodir"), self.cf.get("infomask"))
        self.encoder = InfofileEncoder(self.cf)
        self.scan_period = self.cf.getfloat("scan-period", 1.0)
        pidfile = self.cf.getfile("pidfile", "")
        default_state = os.path.splitext(pidfile)[0] + ".state" if pidfile else ""
        self.state_file = self.cf.getfile("state-file", default_state)
        self.sent: Dict[str, Version] = self._load_state()
        self.scans: Dict[str, Scan] = {}
        self.ack = self.cf.getboolean("ack", True)
        self.ack_timeout = self.cf.getfloat("ack-timeout", 10.0)
        self.window = max(1, self.cf.getint("window", 100))
        self.max_file_size = self.cf.getbytes("max-file-size", "32M")
        #: versions sent and not answered yet, by path
        self.inflight: Dict[str, Version] = {}
        self.acked = 0
        self._saving: Optional["asyncio.Future[None]"] = None

    def _load_state(self) -> Dict[str, Version]:
        if not self.state_file:
            return {}
        try:
            with open(self.state_file, encoding="utf8") as f:
                files = json.load(f)["files"]
            return {path: (int(v[0]), int(v[1])) for path, v in files.items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, IndexError) as ex:
            self.log.warning("ignoring unreadable state file %s: %s", self.state_file, ex)
            return {}

    async def _save_state(self) -> None:
        # serialised on the loop: answers change self.sent while the file is written
        text = json.dumps({"files": {p: list(v) for p, v in sorted(self.sent.items())}})
        # one write at a time, the newest last, even when a scan is cancelled mid-write
        if self._saving is not None and not self._saving.done():
            await asyncio.wait([self._saving])
        self._saving = asyncio.ensure_future(self.run_blocking(write_atomic, self.state_file, text))
        await asyncio.shield(self._saving)

    def start_work(self) -> None:
        if not self.state_file:
            self.log.info("no pidfile or state-file: files are sent again after a restart")
        directory = os.path.dirname(self.pattern)
        self.watch = None if glob.has_magic(directory) else DirWatch(directory, self.log)
        self._scanner = self.spawn(self._run())

    async def stop_work(self) -> None:
        """Stop scanning; wait a little for answers; save what was answered."""
        self._scanner.cancel()
        if self.watch is not None:
            self.watch.close()
        deadline = time.monotonic() + STOP_WAIT
        while self.inflight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.inflight:
            self.log.info("%d files unanswered, sent again at next start", len(self.inflight))
        if self.state_file:
            await self._save_state()

    async def _run(self) -> None:
        while True:
            try:
                await self.scan()
            except OSError as ex:
                self.log.error("scanning %s failed: %s", self.pattern, ex)
            if self.watch is not None and self.watch.watching and self._settled():
                # nothing to do until infodir changes; a recheck with no change scans at once
                if not await self.watch.wait(self.watch.recheck):
                    continue
            await asyncio.sleep(self.scan_period)

    def _settled(self) -> bool:
        """Whether every file's version seen is sent and answered: no scan needed until a change."""
        return not self.inflight and all(self.sent.get(p) == s.seen for p, s in self.scans.items())

    async def scan(self) -> None:
        """One pass: decide per file whether it is due, send what is."""
        found = await self.run_blocking(stat_files, self.pattern)
        for path in [p for p in self.scans if p not in found]:
            del self.scans[path]
        gone = [p for p in self.sent if p not in found]
        for path in gone:
            del self.sent[path]
        due: List[str] = []
        for path, version in found.items():
            scan = self.scans.get(path)
            if scan is None:
                scan = self.scans[path] = Scan(version)
                stable = False
            else:
                stable = scan.seen == version
                scan.seen = version
            if self.sent.get(path) == version:
                scan.pending = False
            elif version[0] > self.max_file_size:
                self.stats.inc("infosender.too_large")
                self.log.error(
                    "%s is larger than max-file-size (%d > %d bytes), not sent",
                    path, version[0], self.max_file_size,
                )  # fmt: skip
                self.sent[path] = version  # logged once per version: wait for a change
            elif self.inflight.get(path) == version:
                pass  # waiting for its answer
            elif stable or scan.pending:
                due.append(path)
            else:
                scan.pending = True  # changed: sent next scan, stable or not
        sent = 0
        for path in sorted(due):
            sent += await self.send_file(path)
        acked, self.acked = self.acked, 0
        if (sent or gone or acked) and self.state_file:
            await self._save_state()

    async def send_file(self, path: str) -> int:
        """Send one file; 1 if it went out, 0 if it is left for the next scan."""
        assert self.cc is not None
        stream = self.cc.stream
        if stream.queued >= stream.qmaxsize or len(self.inflight) >= self.window:
            self.stats.inc("infosender.deferred")
            return 0  # the cc is not taking messages: retry later rather than drop
        try:
            read = await self.run_blocking(read_file, path, self.max_file_size)
        except OSError as ex:
            self.log.info("cannot read %s: %s", path, ex)
            return 0
        if read is None:
            self.stats.inc("infosender.torn")
            return 0  # changed while being read: the next scan sends the new version
        version, mtime, data = read
        packed = await self.run_blocking(self.encoder.pack, data)
        if self.ack:
            self.inflight[path] = version
            msg = self.encoder.message(path, mtime, packed, ack=True)
            self.spawn(self._deliver(path, version, msg))
        else:
            self.publish(self.encoder.message(path, mtime, packed))
            self.sent[path] = version
        self.stats.inc("count")
        self.stats.inc("changes")
        self.stats.inc("infosender.bytes.read", len(data))
        self.stats.inc("infosender.bytes.sent", len(packed))
        self.log.debug("sent %s (%d bytes)", path, len(data))
        return 1

    async def _deliver(self, path: str, version: Version, msg: CCMessage) -> None:
        """Wait for the writer's answer; only then is ``version`` sent (saved by the next scan)."""
        try:
            reply = await self.query(msg, self.ack_timeout)
        finally:
            if self.inflight.get(path) == version:
                del self.inflight[path]
        if reply is None:
            self.stats.inc("infosender.unacked")
            self.log.warning("no answer for %s in %.1f s, sending again", path, self.ack_timeout)
        elif reply.type == "error":
            self.stats.inc("infosender.errors")
            body = reply.get_body()
            self.log.error("writer refused %s (%s): %s", path, body.get("code"), body.get("msg"))
            if body.get("code") in FINAL_ERRORS:
                self.sent[path] = version  # sent again once the file changes, not every scan
                self.acked += 1
        else:
            self.stats.inc("infosender.acked")
            self.sent[path] = version
            self.acked += 1


if __name__ == "__main__":
    run_daemon(InfofileCollector)
