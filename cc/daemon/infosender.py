"""infosender: send files matching a mask as ``pub.infofile`` when they change.

``python -m cc.daemon.infosender config.ini d:infosender``
"""

import asyncio
import glob
import json
import os
from typing import Dict, List, Optional, Tuple

import skytools

from cc.daemon import CCDaemon, run_daemon
from cc.infomsg import InfofileEncoder

CC_DAEMON = "InfofileCollector"

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


def read_file(path: str) -> Optional[Tuple[Version, float, bytes]]:
    """Contents with the version read; None if the file changed while being read."""
    with open(path, "rb") as f:
        before = os.fstat(f.fileno())
        data = f.read()
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

    ::

        [d:infosender]
        module = cc.daemon.infosender
        infodir = /var/lib/postgresql/info
        infomask = *.info
        #scan-period = 1
        #state-file = ~/pid/infosender.state
        #compression = none
        #compression-level =
        #msg-suffix =
        #use-blob = yes
    """

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

    def _save_state(self) -> None:
        text = json.dumps({"files": {p: list(v) for p, v in sorted(self.sent.items())}})
        skytools.write_atomic(self.state_file, text, mode="t")

    def start_work(self) -> None:
        if not self.state_file:
            self.log.info("no pidfile or state-file: files are sent again after a restart")
        self.spawn(self._run())

    async def _run(self) -> None:
        while True:
            try:
                await self.scan()
            except OSError as ex:
                self.log.error("scanning %s failed: %s", self.pattern, ex)
            await asyncio.sleep(self.scan_period)

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
            elif stable or scan.pending:
                due.append(path)
            else:
                scan.pending = True  # changed: sent next scan, stable or not
        sent = 0
        for path in sorted(due):
            sent += await self.send_file(path)
        if (sent or gone) and self.state_file:
            await self.run_blocking(self._save_state)

    async def send_file(self, path: str) -> int:
        """Send one file; 1 if it went out, 0 if it is left for the next scan."""
        assert self.cc is not None
        stream = self.cc.stream
        if stream.queued >= stream.qmaxsize:
            self.stats.inc("infosender.deferred")
            return 0  # the cc is not taking messages: retry later rather than drop
        try:
            read = await self.run_blocking(read_file, path)
        except OSError as ex:
            self.log.info("cannot read %s: %s", path, ex)
            return 0
        if read is None:
            self.stats.inc("infosender.torn")
            return 0  # changed while being read: the next scan sends the new version
        version, mtime, data = read
        packed = await self.run_blocking(self.encoder.pack, data)
        self.publish(self.encoder.message(path, mtime, packed))
        self.sent[path] = version
        self.stats.inc("count")
        self.stats.inc("changes")
        self.stats.inc("infosender.bytes.read", len(data))
        self.stats.inc("infosender.bytes.sent", len(packed))
        self.log.debug("sent %s (%d bytes)", path, len(data))
        return 1


if __name__ == "__main__":
    run_daemon(InfofileCollector)
