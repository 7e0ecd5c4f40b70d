"""Wait until something in a directory changes (Linux inotify) instead of looking every second.

logtail and infosender wait for files to grow or change.  Looking at them
on a timer costs a wake-up (and a trip to a worker thread) every period,
also on a host where nothing happens for hours.  :class:`DirWatch` lets
such a wait end when the kernel reports a change in the directory (a file
created, written, renamed, removed; an overflowed event queue ends it too),
and otherwise after ``timeout``: the timeout stays, because inotify does not
see changes made by other machines on a network file system.  On a local
file system it sees every change but writes through ``mmap``, so there the
callers look anyway only every :attr:`DirWatch.recheck` = ``RECHECK_LOCAL``
seconds, a safety net that costs no wake-up on a host where nothing happens.

Where inotify cannot be had (not Linux, the per-user limit of instances
reached), :meth:`DirWatch.wait` sleeps the whole timeout, as polling did.
"""

import asyncio
import ctypes
import ctypes.util
import logging
import os
from typing import Optional

from cc.tick import next_multiple

__all__ = ["DirWatch", "RECHECK", "RECHECK_LOCAL"]

#: seconds after which a watched directory is looked at anyway: on a network file
#: system, whose changes made elsewhere raise no event, or one of a type not known
RECHECK = 10.0
#: the same on a local file system (:data:`LOCAL_FILE_SYSTEMS`)
RECHECK_LOCAL = 60.0

#: statfs() f_type of file systems whose every change inotify reports (linux/magic.h):
#: ext2-4, xfs, btrfs, tmpfs, overlay, zfs, f2fs
LOCAL_FILE_SYSTEMS = frozenset(
    (0xEF53, 0x58465342, 0x9123683E, 0x01021994, 0x794C7630, 0x2FC12FC1, 0xF2F52010)
)

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
#: everything that can change what a scan of the directory or a read of its files finds
MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE

_libc: Optional[ctypes.CDLL] = None


def _inotify() -> Optional[ctypes.CDLL]:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            lib.inotify_init1  # noqa: B018 (not there: not Linux)
            lib.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        except (OSError, AttributeError):
            return None
        _libc = lib
    return _libc


def _file_system_type(lib: ctypes.CDLL, path: str) -> Optional[int]:
    """statfs()'s f_type of ``path``, or None when it cannot be told."""
    buf = ctypes.create_string_buffer(256)  # struct statfs: 120 bytes on 64-bit Linux
    if lib.statfs(os.fsencode(path), buf) != 0:
        return None
    # f_type comes first, a long on most platforms: elsewhere no local type matches
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


class DirWatch:
    """Changes in one directory, as an event that :meth:`wait` waits for (on the loop).

    Call :meth:`wait` only after looking at the files: a change made while
    looking is kept and ends the next wait at once, so none is missed.
    """

    def __init__(self, path: str, log: logging.Logger) -> None:
        self.path = path
        self._fd = -1
        self._changed = asyncio.Event()
        #: seconds after which the callers look at the directory even without an event
        self.recheck = RECHECK
        self._loop = asyncio.get_running_loop()
        lib = _inotify()
        if lib is None:
            log.info("no inotify: %s is looked at on a timer", path)
            return
        fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0 or lib.inotify_add_watch(fd, os.fsencode(path), MASK) < 0:
            err = ctypes.get_errno()
            if fd >= 0:
                os.close(fd)
            log.info("cannot watch %s (%s): looked at on a timer", path, os.strerror(err))
            return
        self._fd = fd
        self._loop.add_reader(fd, self._on_events)
        if _file_system_type(lib, path) in LOCAL_FILE_SYSTEMS:
            self.recheck = RECHECK_LOCAL

    @property
    def watching(self) -> bool:
        """Whether changes end a wait (else only its timeout does)."""
        return self._fd >= 0

    def _on_events(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        self._changed.set()

    async def wait(self, timeout: float) -> bool:
        """Until a change or ``timeout`` seconds at most; whether there was a change.

        Without a change the wait ends at the next multiple of ``timeout``
        on the loop's clock, where the agent's other timers of that period
        (keepalives, stats: :class:`~cc.tick.Ticker`) wake it anyway.
        """
        now = self._loop.time()
        delay = next_multiple(now, timeout) - now
        if self._fd < 0:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(self._changed.wait(), delay)
        except asyncio.TimeoutError:
            return False
        self._changed.clear()
        return True

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
