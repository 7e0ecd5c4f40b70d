"""Destination files of tailed logs: one per source file identity, written at source offsets.

A source file is identified by ``(hostname, st_dev, st_ino, filename,
generation)`` as logtail reports it (``generation`` counts truncations of
the same inode).  :class:`DestinationMap` gives each identity its own
destination path under ``dstdir`` and remembers the mapping in a sidecar
file (``.cc-tail-state``, replaced atomically), so that after a restart of
the writer a resent fragment goes to the same file as before.
:class:`TailFile` writes fragments at their source offset (``pwrite``), so a
fragment written twice leaves the same bytes: delivery may repeat, the
destination stays a byte-for-byte copy of the source.

Compressed destinations (``write-compressed = keep/yes``) cannot be written
at an offset: fragments are appended as compressed members instead, and
fragments that end at or before what this process already wrote are
skipped.  After a writer restart a resent fragment may be appended twice.

Nothing here touches the IOLoop; the tailwriter's worker threads call it.
"""

import json
import os
import threading
import time
from typing import Dict, NamedTuple, Optional

from cc.files import compression
from cc.files.atomic import write_atomic
from cc.files.paths import UnsafePath, clean_name, safe_join

__all__ = ["TailIdentity", "DestinationMap", "TailFile", "STATE_NAME", "default_mask"]

#: the sidecar in dstdir that maps identities to destination files
STATE_NAME = ".cc-tail-state"
#: rotated mode: each source generation gets the time it was first seen (the original's format)
ROTATED_SUFFIX = ".%Y-%m-%d_%H-%M-%S"
#: mappings whose destination has not changed for this long are forgotten
FORGET_SECONDS = 7 * 86400
#: identities remembered at most (a flood of invented identities cannot grow the state forever)
MAX_ENTRIES = 10000


class TailIdentity(NamedTuple):
    hostname: str
    st_dev: int
    st_ino: int
    filename: str
    generation: int

    def key(self) -> str:
        return json.dumps(list(self))


def default_mask(host_subdirs: bool) -> str:
    """The original's destination masks when ``dstmask`` is empty."""
    return "%(hostname)s/%(filename)s" if host_subdirs else "%(hostname)s--%(filename)s"


class DestinationMap:
    """identity -> destination path, persisted in ``dstdir/.cc-tail-state``.

    Thread-safe: every worker thread asks it for the files it opens.
    """

    def __init__(self, dstdir: str, mask: str) -> None:
        self.dstdir = dstdir
        self.mask = mask
        mask % {"hostname": "h", "filename": "f", "filepath": "p"}  # bad masks fail at startup
        os.makedirs(dstdir, exist_ok=True)
        self.state_path = os.path.join(dstdir, STATE_NAME)
        self._lock = threading.Lock()
        self._entries: Dict[str, str] = self._load()

    def _load(self) -> Dict[str, str]:
        try:
            with open(self.state_path, encoding="utf8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        return {str(k): str(v) for k, v in data.get("files", {}).items()}

    def relpath(self, ident: TailIdentity, ext: str) -> str:
        """The mask applied to an untrusted identity; :class:`UnsafePath` if it is not usable."""
        host = clean_name(ident.hostname, "hostname").replace("/", "_")
        path = clean_name(ident.filename, "filename")
        rel = self.mask % {
            "hostname": host,
            "filepath": path.lstrip("/"),
            "filename": os.path.basename(path),
        }
        if rel.startswith(STATE_NAME):  # the state file or its temporary file
            raise UnsafePath("path %r would overwrite the writer's state" % rel)
        safe_join(self.dstdir, rel)
        return rel + ext

    def lookup(self, ident: TailIdentity, rotated: bool, ext: str) -> str:
        """The absolute destination of ``ident``; a new one is recorded before it is used."""
        key = ident.key()
        with self._lock:
            rel = self._entries.get(key)
            if rel is None:
                # another handler on this dstdir (one being replaced by a reload) may have saved
                self._entries = {**self._load(), **self._entries}
                rel = self._entries.get(key) or self._new_path(ident, rotated, ext)
                self._entries[key] = rel
                self._save()
            return safe_join(self.dstdir, rel)

    def _new_path(self, ident: TailIdentity, rotated: bool, ext: str) -> str:
        base = self.relpath(ident, "")
        if rotated:
            base += time.strftime(ROTATED_SUFFIX)
        used = set(self._entries.values())
        rel, n = base + ext, 0
        # a name taken by another identity, or a file we did not create, is never reused
        while rel in used or os.path.lexists(safe_join(self.dstdir, rel)):
            n += 1
            rel = "%s.%d%s" % (base, n, ext)
        return rel

    def _save(self) -> None:
        self._prune()
        text = json.dumps({"files": self._entries}, indent=0, sort_keys=True)
        write_atomic(self.state_path, text, durable=True)

    def _prune(self) -> None:
        if len(self._entries) < 100:
            return
        cutoff = time.time() - FORGET_SECONDS
        for key, rel in list(self._entries.items()):
            try:
                stale = os.stat(os.path.join(self.dstdir, rel)).st_mtime < cutoff
            except FileNotFoundError:
                stale = True
            if stale:
                del self._entries[key]
        while len(self._entries) > MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]


class TailFile:
    """One open destination file.

    :param path: absolute path (from :meth:`DestinationMap.lookup`)
    :param store: compression of the file itself: ``''`` (positioned
        writes), or ``gzip``/``bzip2`` (appended members)
    :param level: compression level for members compressed here
    """

    def __init__(self, path: str, store: str = "", level: Optional[int] = None) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
        if store:
            flags |= os.O_APPEND
        self.fd = os.open(path, flags, 0o644)
        self.path = path
        self.store = store
        self.level = level
        #: source offset this process has written up to (appended files only)
        self.end: Optional[int] = None
        self.last_write = time.monotonic()
        self.dirty = False

    def write(self, fpos: int, data: bytes, comp: str, raw: bytes) -> int:
        """Write source bytes ``data`` (``raw`` as received, in ``comp``) found at ``fpos``.

        Returns the number of bytes written to the file.
        """
        self.last_write = time.monotonic()
        self.dirty = True
        if not self.store:
            return _pwrite_all(self.fd, data, fpos)
        end = fpos + len(data)
        if self.end is not None and end <= self.end:
            return 0  # a resent fragment already in the file
        if self.end is not None and fpos < self.end:
            data, raw = data[self.end - fpos :], b""
        self.end = end
        if not (raw and comp == self.store):
            raw = compression.compress(data, self.store, self.level)
        return _pwrite_all(self.fd, raw, None)

    def sync(self) -> None:
        if self.dirty:
            os.fdatasync(self.fd)
            self.dirty = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _pwrite_all(fd: int, data: bytes, offset: Optional[int]) -> int:
    view = memoryview(data)
    done = 0
    while done < len(data):
        if offset is None:
            done += os.write(fd, view[done:])
        else:
            done += os.pwrite(fd, view[done:], offset + done)
    return done
