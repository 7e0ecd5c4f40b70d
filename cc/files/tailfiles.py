"""Destination files of tailed logs: one per source file identity, written at source offsets.

A source file is identified by ``(hostname, st_dev, st_ino, filename,
generation)`` as logtail reports it (``generation`` counts truncations of
the same inode).  :class:`DestinationMap` gives each identity its own
destination path under ``dstdir`` and remembers the mapping in a sidecar
file (``.cc-tail-state``, replaced atomically and durably), so that after a
restart of the writer a resent fragment goes to the same file as before.
An entry is on disk before any byte of its file is written (a save that
failed is tried again at the next lookup, and the lookup fails until then).

A copy need not begin at the source's byte 0 (logtail started at the end of
an existing log, or skipped a backlog): each entry keeps the *origin*, the
source offset of the copy's first byte, and :class:`TailFile` writes source
offset ``fpos`` at ``fpos - origin``.  It never writes past the end of the
copy: a fragment that would leave a gap is refused (:class:`Gap`) and sent
again by logtail after the fragments before it, so a copy never holds bytes
its source did not have (no NUL padding).
:class:`TailFile` writes fragments at their offset (``pwrite``), so a
fragment written twice leaves the same bytes: delivery may repeat, the
destination stays a byte-for-byte copy of the source from its origin.

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
from typing import Dict, NamedTuple, Optional, Tuple

from cc.files import compression
from cc.files.atomic import write_atomic
from cc.files.paths import UnsafePath, clean_name, safe_join

__all__ = [
    "TailIdentity",
    "Destination",
    "DestinationMap",
    "TailFile",
    "Gap",
    "STATE_NAME",
    "default_mask",
]

#: the sidecar in dstdir that maps identities to destination files
STATE_NAME = ".cc-tail-state"
#: rotated mode: each source generation gets the time it was first seen (the original's format)
ROTATED_SUFFIX = ".%Y-%m-%d_%H-%M-%S"
#: mappings whose destination has not changed for this long are forgotten
FORGET_SECONDS = 7 * 86400
#: identities remembered at most (a flood of invented identities cannot grow the state forever)
MAX_ENTRIES = 100000
#: seconds between looks for entries to forget (a look stats every copy)
PRUNE_EVERY = 3600.0


class Gap(ValueError):
    """A fragment that does not join the copy: it would leave a gap, or lies before its origin."""


class Destination(NamedTuple):
    """Where an identity's copy is (relative to ``dstdir``), the source offset it begins at,
    and when the entry was recorded (Unix time: a copy not created yet is kept that long)."""

    path: str
    origin: int
    since: float = 0.0


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

    Thread-safe: every worker thread asks it for the files it opens.  New
    entries are saved by group commit: while one thread writes the map,
    others add theirs, and the next write (by whichever of them comes
    first) saves them all; each lookup returns once its own entry is on
    disk.  So a thousand new copies at once cost a few writes of the map,
    not one each (the map is rewritten whole, so one each was quadratic).
    """

    def __init__(self, dstdir: str, mask: str) -> None:
        self.dstdir = dstdir
        self.mask = mask
        mask % {"hostname": "h", "filename": "f", "filepath": "p"}  # bad masks fail at startup
        os.makedirs(dstdir, exist_ok=True)
        self.state_path = os.path.join(dstdir, STATE_NAME)
        #: guards the entries and the counts of entries added and saved
        self._lock = threading.Lock()
        #: a thread writing the map, and those waiting for it
        self._saving = threading.Condition(threading.Lock())
        self._writing = False
        #: the state file as last read or written (a change means another writer saved)
        self._seen: Optional[Tuple[int, int, int]] = None
        self._entries: Dict[str, Destination] = self._load()
        #: entries added so far, and how many of them are on disk
        self._added = self._saved = 0
        #: entries not on disk yet: key -> the count of entries added when it was
        self._unsaved: Dict[str, int] = {}
        self._pruned = 0.0
        #: writes of the map so far
        self.saves = 0

    def _state_seen(self) -> Optional[Tuple[int, int, int]]:
        try:
            st = os.stat(self.state_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _load(self) -> Dict[str, Destination]:
        """The saved entries; one saved before origins were kept begins at 0, one saved before
        entries had a ``since`` counts as recorded now."""
        self._seen = self._state_seen()
        try:
            with open(self.state_path, encoding="utf8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        entries, now = {}, time.time()
        for key, value in data.get("files", {}).items():
            if isinstance(value, str):
                entries[str(key)] = Destination(value, 0, now)
            else:
                since = float(value.get("since", now))
                entries[str(key)] = Destination(str(value["path"]), int(value["origin"]), since)
        return entries

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

    def lookup(
        self, ident: TailIdentity, rotated: bool, ext: str, origin: int, wait: bool = True
    ) -> Destination:
        """Where ``ident``'s copy is (absolute path), beginning at source offset ``origin`` if
        it is new.  A new entry is on disk before this returns: OSError if it cannot be saved
        (it is saved again at the next lookup).  ``wait=False`` enters it without waiting for
        the disk: a caller entering several calls :meth:`save_added` once, then looks each up
        again (on disk by then) before writing a byte of it."""
        key = ident.key()
        with self._lock:
            dest = self._entries.get(key)
            if dest is None and self._state_seen() != self._seen:
                # another handler on this dstdir (one being replaced by a reload) saved
                self._entries = {**self._load(), **self._entries}
                dest = self._entries.get(key)
            if dest is None:
                dest = Destination(self._new_path(ident, rotated, ext), origin, time.time())
                self._entries[key] = dest
                self._added += 1
                self._unsaved[key] = self._added
            needed = self._unsaved.get(key, 0)
        if wait and needed > self._saved:
            self._commit(needed)
        return Destination(safe_join(self.dstdir, dest.path), dest.origin, dest.since)

    def save_added(self) -> None:
        """Return once every entry added so far is on disk (OSError if the map cannot be
        written: each entry's own lookup tries again)."""
        needed = self._added
        if needed > self._saved:
            self._commit(needed)

    def _commit(self, needed: int) -> None:
        """Return once the first ``needed`` entries added are on disk: wait for the thread
        writing the map, or write it (with what every thread added meanwhile)."""
        with self._saving:
            while self._saved < needed:
                if not self._writing:
                    self._writing = True
                    break
                self._saving.wait()
            else:
                return
        try:
            self._save()
        finally:
            with self._saving:
                self._writing = False
                self._saving.notify_all()

    def _new_path(self, ident: TailIdentity, rotated: bool, ext: str) -> str:
        base = self.relpath(ident, "")
        if rotated:
            base += time.strftime(ROTATED_SUFFIX)
        used = {dest.path for dest in self._entries.values()}
        rel, n = base + ext, 0
        # a name taken by another identity, or a file we did not create, is never reused
        while rel in used or os.path.lexists(safe_join(self.dstdir, rel)):
            n += 1
            rel = "%s.%d%s" % (base, n, ext)
        return rel

    def _save(self) -> None:
        """Write the map as it is now (OSError if it cannot be: the entries stay unsaved)."""
        with self._lock:
            self._prune()
            added = self._added
            files = {key: dest._asdict() for key, dest in self._entries.items()}
        text = json.dumps({"files": files}, indent=0, sort_keys=True)
        write_atomic(self.state_path, text, durable=True)
        with self._lock:
            self.saves += 1
            self._seen = self._state_seen()
            self._saved = added
            self._unsaved = {k: n for k, n in self._unsaved.items() if n > added}

    def _prune(self) -> None:
        """Forget entries whose copy has not changed for FORGET_SECONDS, and those whose copy
        is missing FORGET_SECONDS after they were recorded (it was removed, or never written);
        looked for once every PRUNE_EVERY seconds, while the map is large.

        An entry whose copy is not created yet stays: it was saved before a worker opens the
        file, and forgetting it would start a second copy (``name.1``) at the next lookup.
        """
        now = time.time()
        if len(self._entries) >= 100 and now - self._pruned >= PRUNE_EVERY:
            self._pruned = now
            cutoff = now - FORGET_SECONDS
            for key, dest in list(self._entries.items()):
                try:
                    stale = os.stat(os.path.join(self.dstdir, dest.path)).st_mtime < cutoff
                except FileNotFoundError:
                    stale = dest.since < cutoff
                if stale and key not in self._unsaved:
                    del self._entries[key]
        while len(self._entries) > MAX_ENTRIES:
            del self._entries[next(iter(self._entries))]


class TailFile:
    """One open destination file.

    :param dest: absolute path and origin (from :meth:`DestinationMap.lookup`)
    :param store: compression of the file itself: ``''`` (positioned
        writes), or ``gzip``/``bzip2`` (appended members)
    :param level: compression level for members compressed here
    """

    def __init__(self, dest: Destination, store: str = "", level: Optional[int] = None) -> None:
        os.makedirs(os.path.dirname(dest.path), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
        if store:
            flags |= os.O_APPEND
        #: whether this opened a file that was not there (a new copy)
        self.created = not os.path.lexists(dest.path)
        self.fd = os.open(dest.path, flags, 0o644)
        self.path = dest.path
        self.origin = dest.origin
        self.store = store
        self.level = level
        #: source offset this process has written up to (appended files only)
        self.end: Optional[int] = None
        self.last_write = time.monotonic()
        self.dirty = False

    def write(self, fpos: int, data: bytes, comp: str, raw: bytes) -> int:
        """Write source bytes ``data`` (``raw`` as received, in ``comp``) found at ``fpos``.

        Returns the number of bytes written to the file; :class:`Gap` if the
        fragment does not join the copy (nothing is written then).
        """
        if fpos < self.origin:
            if fpos + len(data) <= self.origin:
                raise Gap("fragment at %d ends before the copy's origin %d" % (fpos, self.origin))
            data, raw = data[self.origin - fpos :], b""  # the part from the origin on
            fpos = self.origin
        self.last_write = time.monotonic()
        if not self.store:
            end = self.origin + os.fstat(self.fd).st_size
            if fpos > end:
                raise Gap(
                    "fragment at %d would leave a gap: the copy holds source bytes %d to %d"
                    % (fpos, self.origin, end)
                )
            self.dirty = True
            return _pwrite_all(self.fd, data, fpos - self.origin)
        end = fpos + len(data)
        if self.end is not None and end <= self.end:
            return 0  # a resent fragment already in the file
        if self.end is not None and fpos > self.end:
            raise Gap("fragment at %d would leave a gap after %d" % (fpos, self.end))
        self.dirty = True
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
