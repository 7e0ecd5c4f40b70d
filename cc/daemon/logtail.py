"""logtail: tail log files across rotation and deliver them, at least once, to a tailwriter."""

import asyncio
import base64
import collections
import os
import time
from typing import Any, Deque, Dict, Optional, Tuple, Union

from skytools.config import ConfigError

from cc.backoff import Backoff
from cc.daemon import CCDaemon, run_daemon
from cc.files import compression, infomsg
from cc.files.tailsource import (
    Source,
    find_by_inode,
    find_logs,
    next_generation,
    read_state,
    write_state,
)
from cc.files.watch import DirWatch
from cc.message import CCMessage, is_valid_type
from cc.msgtypes import LogtailMessage
from cc.options import REQUIRED, Option
from cc.ratelog import RateLimitedLog

CC_DAEMON = "LogfileTailer"

#: seconds between the two extra looks for late writes to a file being left (as the original)
PROBE_DELAY = 0.1
#: seconds between looks at a log that has stopped growing, where its directory cannot be
#: watched: poll-period doubles up to this
IDLE_POLL = 1.0
#: seconds between saves of the position at the most
SAVE_DELAY = 0.2
#: seconds a stopping logtail waits for acknowledgements (the daemon base allows 5 in all)
STOP_WAIT = 3.0
#: seconds between looks for a truncation while the window is full (the writer is away)
WINDOW_FULL_LOOK = 1.0
#: a read that found a truncated file
TRUNCATED = "truncated"
#: largest fragment: one must fit a message (cc-max-message-size, 64M by default, with base64
#: when use-blob = no) and the writer's max-file-size, or it would be refused and resent forever
MAX_FRAGMENT = 16 * 1024 * 1024

Fragment = Tuple[int, int, bytes]  # source offset, source length, payload (compressed)


class Pending:
    """A fragment sent and not yet acknowledged."""

    __slots__ = ("end", "acked")

    def __init__(self, end: int) -> None:
        self.end = end
        self.acked = False


class LogfileTailer(CCDaemon):
    """Sends what is appended to a log file as ``pub.logtail`` fragments.

    Each fragment carries its source offset (``fpos``) and the file identity
    (``st_dev``, ``st_ino``, ``filename``, ``generation``: truncations seen of
    that inode).  Up to ``window`` fragments are in flight; each is resent
    every ``ack-timeout`` seconds until a tailwriter acknowledges it (an
    ``error`` answer is logged and retried with backoff), and the position
    is saved (atomically, in ``state-file``) only up to the acknowledged
    bytes.  A killed logtail thus resends what may not have arrived; the
    tailwriter writes at the offset, so nothing is doubled.  A fragment that
    finds no route, or crashes a handler, gets no ``error`` from the server
    (``pub.*`` stays fire-and-forget there, see :func:`cc.msgtypes.wants_reply`,
    so an old logtail that does not read replies is never sent any): it is
    simply resent after ``ack-timeout``.

    Start: the saved file is found by inode (also after rotation renamed it)
    and read on from the saved offset, unless more than ``lag-max-bytes``
    are behind (then the backlog is skipped: the newest file is read from
    its end, as a new copy).  Without a saved position the newest file is
    read from ``start-at`` (``end``, as the original, or ``beginning``), if
    it was there at logtail's first look; a file that appears later, and
    the newest one when the saved file is gone, are read from byte 0.  Each
    fragment carries ``origin``, the source offset where its copy begins,
    so the writer starts the copy there instead of padding it.

    A file truncated or replaced in place (``copytruncate``: it shrank, or
    its first bytes changed, looked at after every read and every second
    while the window is full) is a new generation, read from 0 into a new
    destination; what was written to it after logtail's last read is lost,
    and logged (``logtail.truncated_lost_bytes`` counts the part seen).

    ::

        [d:logtail]
        module = cc.daemon.logtail
        logdir = /var/log/postgresql
        # classic: the files matching logmask, in name order
        #operation-mode = classic
        logmask = postgresql-*.log
        # rotated: one fixed name that rotation renames away
        #logname = postgresql.log
        # text: fragments end on line ends where they can; binary: as read
        #file-mode = text
        #compression = none
        #compression-level =
        #msg-suffix =
        #use-blob = yes
        # bytes behind at start beyond which the backlog is skipped (0: resume only without lag)
        #lag-max-bytes = 1G
        # where a file found at the first look, without a saved position, is read from:
        # end (the original's) or beginning; files that appear later are read from 0
        #start-at = end
        # fragment size (default 1M; at least 64K with compression), lines per fragment
        #buffer-bytes = 0
        #buffer-lines = -1
        # default: the pidfile (the [ccserver] template's, per job) with .save
        #state-file =
        #window = 8
        #ack-timeout = 10
        # seconds between looks at the end of the log while it grows; then, with inotify,
        # until logdir changes (at most 10 s), else doubling up to 1 s
        #poll-period = 0.2
    """

    OPTIONS = (
        Option("logdir", "path", REQUIRED, "directory of the logs", example="/var/log/postgresql"),
        Option("operation-mode", "enum", "classic", "classic (logmask) or rotated (logname)",
               choices=("classic", "rotated")),
        Option("logmask", "str", None, "glob of the files tailed (classic)"),
        Option("logname", "str", None, "the file tailed (rotated)"),
        Option("file-mode", "enum", "text", "text or binary", choices=("text", "binary")),
        Option("lag-max-bytes", "bytes", "1G", "lag beyond which old data is skipped"),
        Option("start-at", "enum", "end", "where a log without a saved position is read from"
               " at the first look: end (the original's) or beginning",
               choices=("end", "beginning")),
        Option("buffer-lines", "int", -1, "lines per message, at the most; -1: no limit"),
        Option("buffer-bytes", "bytes", "0", "bytes per message, at the most; 0: 1M"),
        Option("state-file", "path", None, "the position (default: beside the pidfile)"),
        Option("window", "int", 8, "messages sent and not acknowledged, at the most"),
        Option("ack-timeout", "seconds", 10, "seconds to wait for an acknowledgement"),
        Option("poll-period", "seconds", 0.2, "seconds between looks at the file"),
    ) + infomsg.OPTIONS  # fmt: skip

    def reload(self) -> None:
        super().reload()
        try:
            self._read_options()
        except ValueError as ex:  # unknown compression, a level that is not a number
            raise ConfigError("[%s]: %s" % (self.cf.main_section, ex)) from None

    def _read_options(self) -> None:
        cf = self.cf
        mode = cf.get("operation-mode", "classic").strip().lower() or "classic"
        if mode not in ("classic", "rotated"):
            raise ConfigError("operation-mode = %s: use classic or rotated" % mode)
        self.rotated = mode == "rotated"
        self.logdir = cf.getfile("logdir")
        if self.rotated:
            self.logname = cf.get("logname")
            if any(c in self.logname for c in "*?["):
                raise ConfigError("logname = %s: wildcards only in logmask" % self.logname)
        else:
            self.logmask = cf.get("logmask")
        file_mode = cf.get("file-mode", "text").strip().lower() or "text"
        if file_mode not in ("text", "binary"):
            raise ConfigError("file-mode = %s: use text or binary" % file_mode)
        self.text = file_mode == "text"
        self.comp = compression.normalize(cf.get("compression", "none"))
        level = cf.get("compression-level", "").strip()
        self.comp_level = int(level) if level else None
        self.msgtype = LogtailMessage.REQ
        suffix = cf.get("msg-suffix", "")
        if suffix and is_valid_type(suffix):
            self.msgtype += "." + suffix
        elif suffix:
            self.log.error("msg-suffix %r is not a valid message type part, ignored", suffix)
        self.use_blob = cf.getboolean("use-blob", True)
        self.lag_max = cf.getbytes("lag-max-bytes", "1G")
        start_at = cf.get("start-at", "end").strip().lower() or "end"
        if start_at not in ("end", "beginning"):
            raise ConfigError("start-at = %s: use end or beginning" % start_at)
        self.start_at_end = start_at == "end"
        self.buffer_lines = cf.getint("buffer-lines", -1)
        self.buffer_bytes = cf.getbytes("buffer-bytes", "0") or 1024 * 1024
        if self.comp and self.buffer_bytes < 64 * 1024:
            self.log.info("buffer-bytes raised to 64K for compression")
            self.buffer_bytes = 64 * 1024
        if self.buffer_bytes > MAX_FRAGMENT:
            self.log.warning("buffer-bytes lowered to 16M: a fragment must fit one message")
            self.buffer_bytes = MAX_FRAGMENT
        pidfile = cf.getfile("pidfile", "")
        default_state = os.path.splitext(pidfile)[0] + ".save" if pidfile else ""
        self.state_file = cf.getfile("state-file", default_state)
        if not self.state_file:
            raise ConfigError("logtail needs a pidfile or a state-file to keep its position")
        self.window = max(1, cf.getint("window", 8))
        self.ack_timeout = cf.getfloat("ack-timeout", 10)
        self.poll_period = cf.getfloat("poll-period", 0.2)

    # -- lifecycle (on the loop) ------------------------------------------------------

    def start_work(self) -> None:
        self.src: Optional[Source] = None
        self.next_path: Optional[str] = None  # see _read
        self.acked_pos = 0
        self.pending: Deque[Pending] = collections.deque()
        #: (st_dev, st_ino) of the files finished lately (rotated mode)
        self.done: Deque[Tuple[int, int]] = collections.deque(maxlen=64)
        self.slots = asyncio.Semaphore(self.window)
        self.idle = asyncio.Event()
        self.idle.set()
        #: notified whenever the oldest fragment in flight is acknowledged
        self.progress = asyncio.Condition()
        self._save_lock = asyncio.Lock()
        self._save_handle: Optional[object] = None
        #: stop_work made the last save: no more are planned
        self._stopped = False
        self._ratelog = RateLimitedLog(self.log)
        self._deliveries: "set[asyncio.Task]" = set()
        #: the writer's last refusal while it lasts: code, msg, since (``pub.state``)
        self.writer_error: Optional[Dict[str, Any]] = None
        self.watch = DirWatch(self.logdir, self.log)
        self._task = asyncio.ensure_future(self._tail())
        self._task.add_done_callback(self._tail_ended)

    async def stop_work(self) -> None:
        self._task.cancel()
        try:
            await asyncio.wait_for(self.idle.wait(), STOP_WAIT)
        except asyncio.TimeoutError:
            self.log.info("%d fragments unacknowledged, resent at next start", len(self.pending))
        for task in self._deliveries:
            task.cancel()
        # this last save stands for a planned one, which would come after the executor is gone
        if self._save_handle is not None:
            self.io_loop.remove_timeout(self._save_handle)
            self._save_handle = None
        self._stopped = True
        await self._save()
        self.watch.close()
        if self.src is not None:
            self.src.close()

    def _tail_ended(self, task: "asyncio.Task[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            self.log.error("tailing failed", exc_info=task.exception())
            self.exit_code = 1
            self.request_stop()

    def state(self) -> Dict[str, Any]:
        """``pub.state`` with ``lag_bytes``: bytes of the tailed file not yet acknowledged,
        and ``writer_error`` while the writer refuses fragments (a writer that cannot write)."""
        state = super().state()
        if getattr(self, "writer_error", None):
            state["writer_error"] = self.writer_error
        src = getattr(self, "src", None)
        if src is not None:
            try:
                state["lag_bytes"] = max(src.size() - self.acked_pos, 0)
            except OSError:
                pass  # closed while switching files; the next state has it
        return state

    # -- reading ---------------------------------------------------------------------------

    async def _tail(self) -> None:
        quiet = 0  # looks in a row that found nothing
        while self.src is None:
            self.src = await self.run_blocking(self._open_start, quiet == 0)
            if self.src is None:
                await self._pause(quiet)
                quiet += 1
        self.acked_pos = self.src.pos
        self.stats.inc("tailed_files")
        await self._save()  # from here on a restart resumes here, not at the end
        self.log.info(
            "started %s at file position %d (its copy begins at %d)",
            self.src.path, self.src.pos, self.src.origin,
        )  # fmt: skip
        quiet = 0
        while True:
            if not await self._acquire_slot():
                await self._switch(None)
                continue
            try:
                frag = await self.run_blocking(self._read)
            except OSError as ex:
                self._ratelog.error("read", "reading %s failed: %s", self.src.path, ex)
                frag = None
            if isinstance(frag, tuple):
                self._send(frag)
                quiet = 0
                continue
            self.slots.release()
            if frag == TRUNCATED:
                await self._switch(None)
            elif not await self._at_eof():
                await self._pause(quiet)
                quiet += 1

    async def _acquire_slot(self) -> bool:
        """A window slot; False if the file was truncated while none was free.

        With the window full (the writer away or slow) nothing is read, so
        the file is looked at every :data:`WINDOW_FULL_LOOK` seconds: a
        truncation is seen before new content can grow past the position.
        """
        while True:
            if not self.slots.locked():
                await self.slots.acquire()
                return True
            try:
                await asyncio.wait_for(self.slots.acquire(), WINDOW_FULL_LOOK)
                return True
            except asyncio.TimeoutError:
                src = self.src
                assert src is not None
                try:
                    if await self.run_blocking(src.replaced):
                        return False
                except OSError as ex:
                    self._ratelog.error("read", "looking at %s failed: %s", src.path, ex)

    async def _pause(self, quiet: int) -> None:
        """Wait before looking again at a log that did not grow (``quiet`` looks in a row).

        The first pause is poll-period, so that a log being written is read
        in pieces of that period; after that, until ``logdir`` changes (at most
        :attr:`DirWatch.recheck` seconds), or where it cannot be watched, poll-period doubling
        up to IDLE_POLL.
        """
        if quiet and self.watch.watching:
            await self.watch.wait(self.watch.recheck)
        else:
            idle_poll = max(IDLE_POLL, self.poll_period)
            await asyncio.sleep(min(idle_poll, self.poll_period * 2 ** min(quiet, 16)))

    def _read(self) -> Union[Fragment, str, None]:
        """The next fragment of the current file (on a worker thread).

        At the end of the file, None, and :attr:`next_path` says where to go
        next: found in the same trip to the worker thread, which is what an
        idle poll costs.
        """
        src = self.src
        assert src is not None
        self.next_path = None  # only what this read found at the end counts
        data = src.read(self.buffer_bytes, self.buffer_lines, self.text)
        if src.replaced():  # after the read: what was read belongs to the content looked at
            return TRUNCATED
        if not data:
            self.next_path = self._next_file()
            return None
        fpos = src.pos
        src.take(data)
        return fpos, len(data), compression.compress(data, self.comp, self.comp_level)

    async def _at_eof(self) -> bool:
        """At the end of the file: move to the next one if there is one; True if moved."""
        src = self.src
        assert src is not None
        path = self.next_path
        if path is None:
            return False
        for _ in range(2):  # late writes to the file being left
            await asyncio.sleep(PROBE_DELAY)
            if await self.run_blocking(src.size) > src.pos:
                return True
        await self._switch(path)
        return True

    async def _switch(self, path: Optional[str]) -> None:
        """Wait until all of the current file is acknowledged, then read ``path`` from 0.

        ``path`` None: the current file was truncated; read it again from 0
        as a new generation.
        """
        src = self.src
        assert src is not None
        if path is None:
            lost = max(src.seen - src.pos, 0)
            self.log.warning(
                "%s was truncated in place after %d bytes were read: %d bytes seen and not "
                "read are lost, and whatever was written after logtail's last look; "
                "truncated, reading it anew",
                src.path, src.pos, lost,
            )  # fmt: skip
            self.stats.inc("logtail.truncated")
            self.stats.inc("logtail.truncated_lost_bytes", lost)
        await self.idle.wait()  # the old generation's fragments are all acknowledged
        if path is None:
            src.new_generation()
        else:
            self.log.info("%s done at %d, next: %s", src.path, src.pos, path)
            # a rotated generation keeps the name it was written under, wherever it is now
            name = os.path.join(self.logdir, self.logname) if self.rotated else path
            new = await self.run_blocking(Source, path, name)
            self.done.append((src.st_dev, src.st_ino))
            src.close()
            self.src = new
            self.stats.inc("tailed_files")
        self.acked_pos = 0
        await self._save()

    def _next_file(self) -> Optional[str]:
        """The file to read after the current one, or None (on a worker thread)."""
        src = self.src
        assert src is not None
        if self.rotated:
            path = os.path.join(self.logdir, self.logname)
            if not os.path.exists(path) or src.same_file(path):
                return None
            return next_generation(self.logdir, self.logname, src, self.done) or path
        files = find_logs(self.logdir, self.logmask)
        if src.path in files:
            if not src.same_file(src.path):
                return src.path  # replaced by a new file of the same name
            i = files.index(src.path)
            return files[i + 1] if i + 1 < len(files) else None
        return files[-1] if files and not src.same_file(files[-1]) else None

    def _latest(self) -> Optional[str]:
        if self.rotated:
            path = os.path.join(self.logdir, self.logname)
            return path if os.path.isfile(path) else None
        files = find_logs(self.logdir, self.logmask)
        return files[-1] if files else None

    def _open_start(self, first_look: bool) -> Optional[Source]:
        """The file and offset to start with (on a worker thread).

        ``first_look``: no look found a file yet; a file found later appeared
        after logtail started, and is read from 0.
        """
        saved = read_state(self.state_file)
        skipped = False  # the backlog was skipped: only what comes from now on
        if saved is not None:
            path = find_by_inode(self.logdir, saved)
            if path is not None:
                src = Source(path, saved.name, saved.generation)
                if not src.resume(saved):
                    self.log.warning("%s was truncated or replaced in place: reading it anew", path)
                    self.stats.inc("logtail.truncated")
                    src.new_generation()
                size = src.size()
                latest = self._latest()
                lag = size - src.pos
                if latest and not src.same_file(latest):
                    lag += os.path.getsize(latest)
                if lag <= self.lag_max:
                    return src
                self.log.warning("lag too big (%d bytes), skipping to the end", lag)
                if latest is None or src.same_file(latest):
                    src.new_generation()  # a new copy, beginning where reading goes on
                    src.start_at(size)
                    return src
                src.close()
                skipped = True
            else:
                self.log.warning("saved file %s is gone, reading the newest from 0", saved.path)
        latest = self._latest()
        if latest is None:
            return None
        src = Source(latest)
        if skipped or saved is None and first_look and self.start_at_end:
            src.start_at(src.size())
        return src

    # -- delivery ------------------------------------------------------------------------

    def _send(self, frag: Fragment) -> None:
        src = self.src
        assert src is not None
        fpos, length, payload = frag
        blob = payload if self.use_blob else None
        msg = LogtailMessage(
            self.msgtype,
            filename=src.name,
            comp=self.comp,
            fpos=fpos,
            data="" if self.use_blob else base64.b64encode(payload).decode("ascii"),
            op_mode="rotated" if self.rotated else "classic",
            st_dev=src.st_dev,
            st_ino=src.st_ino,
            generation=src.generation,
            origin=src.origin,
            mode="b",
            ack=True,
        ).to_message(blob=blob)
        pending = Pending(fpos + length)
        self.pending.append(pending)
        self.idle.clear()
        self.stats.inc("count")
        self.stats.inc("tailed_bytes", length)
        task = asyncio.ensure_future(self._deliver(msg, pending))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, msg: CCMessage, pending: Pending) -> None:
        """Send until acknowledged; then free the window slot and move the saved position."""
        backoff = Backoff(base=1.0, cap=30.0, jitter=0)
        while True:
            reply = await self.query(msg, self.ack_timeout)
            if reply is None:
                self.stats.inc("logtail.resent")
                self._ratelog.warning("ack", "no ack within %.1f s, resending", self.ack_timeout)
                continue
            if reply.type != "error":
                break
            self.stats.inc("logtail.errors")
            body = reply.get_body()
            code, text = str(body.get("code")), str(body.get("msg"))
            if code == "gap":  # ahead of its turn: again once the ones before it are in
                self._ratelog.warning(code, "writer refused a fragment (%s): %s", code, text)
                await self._turn(pending)
                continue
            if code == "busy":
                self._ratelog.warning(code, "writer refused a fragment (%s): %s", code, text)
            else:
                self._ratelog.error("error", "writer refused a fragment (%s): %s", code, text)
                self._writer_failing({"code": code, "msg": text})
            await asyncio.sleep(backoff.next_delay())
        self._writer_failing(None)
        self.stats.inc("logtail.acked")
        pending.acked = True
        self.slots.release()
        if self.pending[0].acked:
            while self.pending and self.pending[0].acked:
                self.acked_pos = self.pending.popleft().end
            async with self.progress:
                self.progress.notify_all()
        if not self.pending:
            self.idle.set()
        if self._save_handle is None and not self._stopped:
            self._save_handle = self.io_loop.call_later(SAVE_DELAY, self._save_later)

    async def _turn(self, pending: Pending) -> None:
        """Until every fragment sent before ``pending`` is acknowledged (ack-timeout at most)."""
        try:
            async with self.progress:
                await asyncio.wait_for(
                    self.progress.wait_for(lambda: self.pending[0] is pending), self.ack_timeout
                )
        except asyncio.TimeoutError:
            pass

    def _writer_failing(self, error: Optional[Dict[str, Any]]) -> None:
        """Keep the writer's refusal (None: it writes again); ``pub.state`` goes out on change."""
        was = self.writer_error
        if error is None and was is None or error and was and error["code"] == was["code"]:
            return
        if error is not None:
            error["since"] = time.time()
        self.writer_error = error
        self.publish_state()

    def _save_later(self) -> None:
        self._save_handle = None
        asyncio.ensure_future(self._save())

    async def _save(self) -> None:
        """Write the acknowledged position (serialised: the newest always lands last)."""
        async with self._save_lock:
            if self.src is not None:
                await self.run_blocking(
                    write_state, self.state_file, self.src.position(self.acked_pos)
                )


if __name__ == "__main__":
    run_daemon(LogfileTailer)
