"""The log file logtail reads: which file, from where, and where it went after rotation.

Loop-free and blocking (file system calls): the logtail daemon runs these on
a worker thread.  A :class:`Source` keeps its file open, so a file renamed
away by rotation is still read to its end; ``name`` stays the path under
which it was first opened, because the writer's identity of the file
includes it.

A file truncated in place (``copytruncate``) keeps its inode; it is told
apart by its size (below the position read) or by its first bytes (up to
:data:`HEAD_BYTES`, the *head*), which appends never change: once they
differ, the file holds new content, even if it has grown past the
position already.
"""

import glob
import hashlib
import json
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

from cc.files.atomic import write_atomic

__all__ = [
    "Source",
    "TailPosition",
    "find_logs",
    "find_by_inode",
    "next_generation",
    "read_state",
    "write_state",
]

#: rotated files with these endings are compressed copies, never tailed
COMPRESSED_ENDINGS = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")
#: the first bytes of a file that identify its content beyond the inode
HEAD_BYTES = 4096


class Source:
    """An open log file and the position read so far."""

    def __init__(self, path: str, name: Optional[str] = None, generation: int = 0) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        st = os.fstat(self.fd)
        self.path = path
        self.name = name or path
        self.st_dev = st.st_dev
        self.st_ino = st.st_ino
        self.generation = generation
        #: offset of the next byte to read
        self.pos = 0
        #: source offset where this generation's copy begins (where reading started)
        self.origin = 0
        #: the first bytes of the file as read (at most HEAD_BYTES, never past pos)
        self.head = b""
        #: the largest size seen of this generation: what a truncation may have cost
        self.seen = 0

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def start_at(self, pos: int) -> None:
        """Begin this generation's copy at ``pos``; the head is read as it is now."""
        self.pos = self.origin = pos
        self.head = os.pread(self.fd, min(pos, HEAD_BYTES), 0)

    def new_generation(self) -> None:
        """The file was truncated or replaced in place: read it anew from 0."""
        self.generation += 1
        self.pos = self.origin = self.seen = 0
        self.head = b""

    def replaced(self) -> bool:
        """Whether the content read so far is gone: the file shrank, or its head changed."""
        size = self.size()
        if size < self.pos or self.head and os.pread(self.fd, len(self.head), 0) != self.head:
            return True
        self.seen = max(self.seen, size)  # looked at before the head: the content read so far
        return False

    def take(self, data: bytes) -> None:
        """``data`` was read at :attr:`pos`: move past it, and keep the head it extends."""
        if self.pos == len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - self.pos]
        self.pos += len(data)

    def read(self, limit: int, lines: int, text: bool) -> bytes:
        """Up to ``limit`` bytes from :attr:`pos` (at most ``lines`` lines if >= 0).

        In text mode a full buffer is cut after its last newline, so fragments
        end on line ends where they can; the partial last line at the end of
        the file is sent as is (as the original).
        """
        data = os.pread(self.fd, limit, self.pos)
        if lines >= 0:
            end = -1
            for _ in range(max(1, lines)):
                end = data.find(b"\n", end + 1)
                if end < 0:
                    break
            if end >= 0:
                data = data[: end + 1]
        if text and len(data) == limit:
            cut = data.rfind(b"\n")
            if cut >= 0:
                data = data[: cut + 1]
        return data

    def same_file(self, path: str) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == (self.st_dev, self.st_ino)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def position(self, offset: int) -> "TailPosition":
        head = self.head[:offset]
        return TailPosition(
            self.name, self.path, self.st_dev, self.st_ino, self.generation, offset,
            self.origin, len(head), _digest(head),
        )  # fmt: skip

    def resume(self, saved: "TailPosition") -> bool:
        """Continue at ``saved``; False when the file no longer holds what was read."""
        head = os.pread(self.fd, saved.head_len, 0)
        if self.size() < saved.offset or _digest(head) != saved.head_hash:
            return False
        self.pos = saved.offset
        self.origin = min(saved.origin, saved.offset)
        # a state of an older logtail has no head: take it as the file is now
        self.head = os.pread(self.fd, min(saved.offset, HEAD_BYTES), 0)
        return True


def _digest(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


class TailPosition:
    """What the state file holds: a file identity, the offset acknowledged up to, where the
    copy began (``origin``) and a digest of the first ``head_len`` bytes."""

    def __init__(
        self,
        name: str,
        path: str,
        st_dev: int,
        st_ino: int,
        generation: int,
        offset: int,
        origin: int = 0,
        head_len: int = 0,
        head_hash: str = _digest(b""),
    ) -> None:
        self.name = name
        self.path = path
        self.st_dev = st_dev
        self.st_ino = st_ino
        self.generation = generation
        self.offset = offset
        self.origin = origin
        self.head_len = head_len
        self.head_hash = head_hash

    def to_dict(self) -> Dict[str, Any]:
        return dict(vars(self))


def find_logs(logdir: str, mask: str) -> List[str]:
    """Files matching ``logdir/mask``, sorted (the last one is the newest, as the original)."""
    return sorted(p for p in glob.glob(os.path.join(logdir, mask)) if os.path.isfile(p))


def find_by_inode(logdir: str, pos: TailPosition) -> Optional[str]:
    """Where the file of ``pos`` is now: its old path, or a rotated name in ``logdir``."""
    candidates = [pos.path] + [os.path.join(logdir, n) for n in sorted(os.listdir(logdir))]
    for path in candidates:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (pos.st_dev, pos.st_ino):
            return path
    return None


def next_generation(
    logdir: str, logname: str, src: Source, done: Iterable[Tuple[int, int]]
) -> Optional[str]:
    """In rotated mode, the generation written after ``src`` when ``logname`` is newer still.

    A logtail that fell behind (or was down) may find that rotation renamed
    more than one generation away: the next one to read is the oldest
    (by modification time) of ``logname*`` in ``logdir`` that was written to
    no earlier than ``src`` and is neither ``src`` nor one already ``done``.
    Compressed rotations are skipped.  None: ``logname`` itself is next.
    """
    since = os.fstat(src.fd).st_mtime_ns
    skip = set(done)
    skip.add((src.st_dev, src.st_ino))
    best: Optional[Tuple[int, str]] = None
    for path in glob.glob(glob.escape(os.path.join(logdir, logname)) + "*"):
        if path.endswith(COMPRESSED_ENDINGS):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in skip or st.st_mtime_ns < since:
            continue
        if best is None or (st.st_mtime_ns, path) < best:
            best = (st.st_mtime_ns, path)
    return best[1] if best else None


def read_state(path: str) -> Optional[TailPosition]:
    """The saved position, or None if there is none or it cannot be read.

    A state written before origins and heads were kept reads as origin 0, no head.
    """
    try:
        with open(path, encoding="utf8") as f:
            data = json.load(f)
        return TailPosition(
            str(data["name"]),
            str(data["path"]),
            int(data["st_dev"]),
            int(data["st_ino"]),
            int(data["generation"]),
            int(data["offset"]),
            int(data.get("origin", 0)),
            min(int(data.get("head_len", 0)), HEAD_BYTES),
            str(data.get("head_hash", _digest(b""))),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_state(path: str, pos: TailPosition) -> None:
    """Replace the state file, durably: the position must survive a power loss."""
    write_atomic(path, json.dumps(pos.to_dict()), durable=True)
