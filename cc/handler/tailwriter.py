"""tailwriter: write ``pub.logtail`` fragments into per-source files, and acknowledge them."""

import asyncio
import base64
import binascii
import logging
import queue
import re
import threading
import time
import zlib
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from skytools.config import ConfigError

from cc.files import compression
from cc.files.paths import UnsafePath
from cc.files.tailfiles import DestinationMap, Gap, TailFile, TailIdentity, default_mask
from cc.files.workerpool import HandOver
from cc.handler import CCHandler
from cc.message import CCMessage
from cc.options import REQUIRED, Option
from cc.policy import FORBIDDEN
from cc.ratelog import RateLimitedLog

CC_HANDLER = "TailWriter"

#: seconds after its last write an open destination file is closed
CLOSE_IDLE = 30.0
#: open destination files per worker at the most (least recently written closed first)
MAX_OPEN = 256
#: integers of the identity and offsets: what a file offset can be (``off_t``)
MAX_INT = 2**63 - 1
#: characters refused in a host or file name: they would forge log lines or make odd names
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
#: longest host or file name taken
MAX_NAME = 1024
#: fragments a worker takes from its queue at once, then reports to the loop (and so acks)
BATCH = 64


class Fragment(NamedTuple):
    """What a worker needs of one ``pub.logtail`` message (fields checked on the loop)."""

    msg: CCMessage
    ident: TailIdentity
    fpos: int
    origin: int
    comp: str
    rotated: bool
    data: Any  # the base64 text of ``data``, or None when the blob carries the bytes

    def size(self) -> int:
        """What the fragment holds while queued (its bytes as received)."""
        return len(self.msg.blob) if self.data is None else len(self.data)


class TailWriter(CCHandler):
    """Writes each ``pub.logtail`` fragment at its source offset in a file under ``dstdir``.

    One destination file per source identity (host, device, inode, name,
    truncation generation); in ``rotated`` mode each generation of the
    fixed log name gets its own file, suffixed with the time it was first
    seen.  Writes run on worker threads (a file always on the same one);
    when a fragment is in the file the sender gets ``reply.<type>`` (if its
    message asked with ``ack``), or an ``error`` reply (``code``:
    ``unsafe-path``, ``bad-field``, ``bad-data``, ``too-large``, ``busy``,
    ``gap``, ``write-failed``).  A fragment whose data would decompress to more than
    ``max-file-size`` is refused as soon as the output passes it, so a
    worker never holds more than that.

    A copy begins at its *origin*, the source offset of its first byte (the
    fragment's ``origin``, where logtail began reading; kept in the file map),
    and holds the source from there on without holes: a fragment that would
    leave a gap is refused (``gap``) and comes again after the ones before it.
    The file map is on disk before a byte of a new copy is acknowledged.
    Acknowledged means handed to the kernel (survives a kill of
    cc-server); with ``fsync = yes`` also on disk (survives power loss).  With
    ``write-compressed = keep/yes`` fragments are appended as compressed
    members, not written at their offset: duplicates are skipped while the
    server runs, but a fragment resent after a restart may appear twice.

    ::

        [h:tailwriter]
        handler = tailwriter
        dstdir = /var/log/cc/tail
        # %(hostname)s, %(filename)s (base name), %(filepath)s; %% for a literal %
        #dstmask =
        # with an empty dstmask: host/file (yes) or host--file (no)
        #host-subdirs = no
        # '' or no: plain copy; keep: as received; yes: recompress with compression
        #write-compressed =
        #compression = gzip
        #compression-level =
        # the most one fragment may be once decompressed (K, M, G); larger ones are refused
        #max-file-size = 256M
        #worker-threads = 10
        # fragments queued per worker thread at the most (the original's inproc queues)
        #zmq_hwm = 1000
        # bytes of fragments (as received) queued for all threads at the most
        #queue-bytes = 64M
        #fsync = no
    """

    CC_ROLES = ("end-service",)
    OPTIONS = (
        Option("dstdir", "path", REQUIRED, "directory the logs go to", example="~/logs"),
        Option("dstmask", "str", None, "file name under dstdir"),
        Option("host-subdirs", "bool", False, "one subdirectory per host"),
        Option("buffer-bytes", "bytes", None, "the original's; replaced by queue-bytes"),
        Option("queue-bytes", "bytes", "64M", "bytes waiting to be written, at the most"),
        Option("fsync", "bool", False, "fsync after each write"),
        Option("zmq_hwm", "int", 1000, "writes waiting per thread, at the most"),
        Option("worker-threads", "int", 10, "threads writing files"),
    ) + compression.WRITER_OPTIONS  # fmt: skip

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        wc = hcf.get("write-compressed", "").strip().lower()
        if wc not in ("", "no", "keep", "yes"):
            raise ConfigError("[%s]: write-compressed = %s: use no, keep or yes" % (hname, wc))
        method = compression.normalize(hcf.get("compression", "gzip")) if wc == "yes" else ""
        if wc == "yes" and not method:
            raise ConfigError("[%s]: write-compressed = yes needs a compression" % hname)
        level_text = hcf.get("compression-level", "").strip()
        if wc in ("keep", "yes"):
            self.log.info("position checking not supported for compressed files")
        if hcf.has_option("buffer-bytes"):
            self.log.info("buffer-bytes ignored: each fragment is written when it comes")
        mask = hcf.get("dstmask", "") or default_mask(hcf.getboolean("host-subdirs", False))
        dests = DestinationMap(hcf.getfile("dstdir"), mask)
        self.max_file_size = hcf.getbytes("max-file-size", compression.MAX_FILE_SIZE)
        if self.max_file_size < 1:
            raise ConfigError("[%s]: max-file-size must be positive" % hname)
        self._ratelog = RateLimitedLog(self.log)
        self.queue_bytes = hcf.getbytes("queue-bytes", "64M")
        #: bytes of the fragments handed to workers and not reported back yet (loop thread)
        self.queued_bytes = 0
        #: fragments gathered by worker (bounded as queued), handed over together
        self._pending: Dict[TailWorker, List[Fragment]] = {}
        self._handover = HandOver(self.hand_over)
        #: the last write that failed, while writes fail: code, msg, since (``pub.state``)
        self.write_error: Optional[Dict[str, Any]] = None
        self.server.add_state_source(hname, self.state)
        self.workers = [
            TailWorker(
                "%s-%d" % (hname, i),
                self,
                dests,
                wc,
                method,
                int(level_text) if level_text else None,
                hcf.getboolean("fsync", False),
                hcf.getint("zmq_hwm", 1000),
            )
            for i in range(max(1, hcf.getint("worker-threads", 10)))
        ]
        for worker in self.workers:
            worker.start()
        self.log.info("writing under %s", dests.dstdir)

    def state(self) -> Dict[str, Any]:
        """This writer in ``pub.state``: ``write_error`` while it cannot write."""
        return {"handler": "tailwriter", "write_error": self.write_error}

    def handle_msg(self, msg: CCMessage) -> None:
        body = msg.get_body()
        self.stats.inc("tailwriter.count")
        foreign = self.server.foreign_host(msg.signer, body.get("hostname"))
        if foreign:
            self.failed(msg, body, FORBIDDEN, "refusing log fragment: %s" % foreign)
            return
        try:
            frag = self._fragment(msg, body)
        except (KeyError, TypeError, ValueError) as ex:
            self.failed(msg, body, "bad-field", "invalid logtail message: %s" % ex)
            return
        worker = self.workers[hash(frag.ident) % len(self.workers)]
        size = frag.size()
        if self.queued_bytes and self.queued_bytes + size > self.queue_bytes:
            self.failed(msg, body, "busy", "writer queue full (queue-bytes)")
            return
        if worker.waiting >= worker.qsize:
            self.failed(msg, body, "busy", "writer queue full")
            return
        worker.waiting += 1
        self.queued_bytes += size
        pending = self._pending
        self._handover.due()
        frags = pending.get(worker)
        if frags is None:
            pending[worker] = [frag]
        else:
            frags.append(frag)

    def hand_over(self) -> None:
        """The fragments gathered to their workers, one list each (a wake-up per worker)."""
        pending, self._pending = self._pending, {}
        for worker, frags in pending.items():
            worker.queue.put(frags)

    def finished(self, worker: "TailWorker", done: List[Tuple[Fragment, Tuple[Any, ...]]]):
        """``worker`` is done with these fragments, in order: each one's bytes leave the
        queue, and its report (a callback and its arguments) says how it went."""
        worker.waiting -= len(done)
        for frag, report in done:
            self.queued_bytes -= frag.size()
            report[0](*report[1:])

    def _fragment(self, msg: CCMessage, body: Dict[str, Any]) -> Fragment:
        ident = TailIdentity(
            _name(body, "hostname"),
            _offset(body, "st_dev", MAX_INT),
            _offset(body, "st_ino", MAX_INT),
            _name(body, "filename"),
            _offset(body, "generation", MAX_INT, 0),
        )
        # fpos plus what a fragment may hold must stay a file offset
        fpos = _offset(body, "fpos", MAX_INT - self.max_file_size)
        origin = _offset(body, "origin", fpos, fpos)  # an old logtail: where it is seen first
        comp = compression.normalize(body.get("comp"))
        data = None if msg.blob else _typed(body, "data", str, "")
        return Fragment(msg, ident, fpos, origin, comp, body.get("op_mode") == "rotated", data)

    # -- results, on the loop -----------------------------------------------------------

    def written(self, frag: Fragment, length: int, nbytes: int) -> None:
        self.write_error = None
        self.stats.inc("appended_bytes", nbytes)
        self.stats.inc("tailwriter.fragments")
        body = frag.msg.get_body()
        if body.get("ack"):
            self.reply(
                frag.msg,
                "reply." + frag.msg.type,
                filename=frag.ident.filename,
                st_dev=frag.ident.st_dev,
                st_ino=frag.ident.st_ino,
                generation=frag.ident.generation,
                fpos=frag.fpos,
                end=frag.fpos + length,
            )

    def failed(self, msg: CCMessage, body: Dict[str, Any], code: str, text: str) -> None:
        """Count, log (rate-limited, the sender's names quoted) and answer a refusal."""
        self.stats.inc("tailwriter.failed." + code.replace("-", "_"))
        if code == "write-failed":
            if self.write_error is None:
                self.write_error = {"code": code, "msg": text, "since": time.time()}
            self.write_error["msg"] = text
        self._ratelog.error("fail:" + code, "%s (from %r)", text, body.get("hostname"))
        if body.get("ack"):
            self.reply_error(msg, text, code)

    def crashed(self, frag: Fragment, ex: Exception) -> None:
        """A worker failed on ``frag`` in a way nothing foresaw: logged with its traceback,
        rate-limited, and answered ``write-failed``."""
        self._ratelog.log_limited(
            logging.ERROR, "crash", "worker crashed on a fragment", exc_info=ex  # type: ignore
        )
        self.failed(frag.msg, frag.msg.get_body(), "write-failed", "write failed: %r" % ex)

    async def stop(self):
        self.server.remove_state_source(self.hname, self.state)
        self._handover.now()
        for worker in self.workers:
            worker.stopping.set()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(None, worker.join, 10.0) for worker in self.workers)
        )


class TailWorker(threading.Thread):
    """Writes fragments of the files hashed to it, one at a time, and reports to the loop."""

    def __init__(
        self,
        name: str,
        handler: TailWriter,
        dests: DestinationMap,
        write_compressed: str,
        method: str,
        level: Optional[int],
        fsync: bool,
        qsize: int,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.handler = handler
        self.io_loop = handler.io_loop
        self.dests = dests
        self.write_compressed = write_compressed
        self.method = method
        self.level = level
        self.fsync = fsync
        #: fragments queued at the most, and queued now (both read and kept on the loop)
        self.qsize = max(1, qsize)
        self.waiting = 0
        #: lists of fragments, a drained batch's each (bounded by ``qsize`` fragments)
        self.queue: "queue.Queue[List[Fragment]]" = queue.Queue()
        self.stopping = threading.Event()
        self.files: Dict[TailIdentity, TailFile] = {}

    def run(self) -> None:
        """Write what the queue holds (:data:`BATCH` at most), then report it to the loop in
        one callback: a busy writer wakes the loop once per batch, not once per fragment."""
        next_maint = time.monotonic() + 1
        get = self.queue.get_nowait
        while not (self.stopping.is_set() and self.queue.empty()):
            try:
                frags = self.queue.get(timeout=0.2)
            except queue.Empty:
                frags = []
            while len(frags) < BATCH:
                try:
                    frags = frags + get()
                except queue.Empty:
                    break
            self._map_new(frags)
            done = []
            for frag in frags:
                try:
                    result = self._write(frag)
                except Exception as ex:  # a worker never dies on a fragment
                    self._drop(frag.ident)
                    result = (self.handler.crashed, frag, ex)
                done.append((frag, result))
            if done:
                self.io_loop.add_callback(self.handler.finished, self, done)
            if time.monotonic() > next_maint:
                self._close_idle(time.monotonic() - CLOSE_IDLE)
                next_maint = time.monotonic() + 1
        self._close_idle(float("inf"))

    def _write(self, frag: Fragment) -> Tuple[Any, ...]:
        """Write one fragment; the loop callback that reports the result."""
        h = self.handler
        body = frag.msg.get_body()
        try:
            raw = frag.msg.blob or base64.b64decode(frag.data, validate=True)
            data = compression.decompress(raw, frag.comp, h.max_file_size)
        except compression.TooLarge as ex:
            text = "refusing fragment of %s: %s" % (frag.ident.filename, ex)
            return h.failed, frag.msg, body, "too-large", text
        except (binascii.Error, ValueError, OSError, EOFError, zlib.error) as ex:
            return h.failed, frag.msg, body, "bad-data", "undecodable fragment: %s" % ex
        try:
            tfile = self._open(frag)
            nbytes = tfile.write(frag.fpos, data, frag.comp, raw)
            if self.fsync:
                tfile.sync()
        except UnsafePath as ex:
            text = "suspicious file path, skipping: %s" % ex
            return h.failed, frag.msg, body, "unsafe-path", text
        except Gap as ex:
            text = "refusing fragment of %r: %s" % (frag.ident.filename, ex)
            return h.failed, frag.msg, body, "gap", text
        except OSError as ex:
            self._drop(frag.ident)
            return h.failed, frag.msg, body, "write-failed", "write failed: %s" % ex
        return h.written, frag, len(data), nbytes

    def _map_new(self, frags: List[Fragment]) -> None:
        """Enter the batch's new copies in the file map and have it saved once for them all.

        A new copy waits for the map on disk (an fsync) before its first byte: a batch of
        them (a fleet's first start, every host's log rotating at midnight) then waits once,
        not once each.  Only fragments whose bytes are known without decoding (plain, in a
        blob, within max-file-size) are entered ahead: one refused when decoded (a bomb, bad
        data) must not take a copy's name; the others are entered at their turn.  What fails
        here fails again at the fragment's turn, with its reply.
        """
        most = self.handler.max_file_size
        new = {
            frag.ident: frag
            for frag in frags
            if frag.ident not in self.files
            and frag.data is None
            and not frag.comp
            and len(frag.msg.blob or b"") <= most
        }
        if len(new) < 2:
            return
        for frag in new.values():
            try:
                ext = compression.extension(self._store(frag))
                self.dests.lookup(frag.ident, frag.rotated, ext, frag.origin, wait=False)
            except Exception:  # fails again at its fragment's turn, and is answered then
                pass
        try:
            self.dests.save_added()
        except OSError:  # each new copy's own lookup tries again, and is answered then
            pass

    def _store(self, frag: Fragment) -> str:
        """How ``frag``'s copy is stored: plain (``''``) or a compression method."""
        if self.write_compressed == "keep":
            return frag.comp
        return self.method if self.write_compressed == "yes" else ""

    def _open(self, frag: Fragment) -> TailFile:
        tfile = self.files.get(frag.ident)
        if tfile is not None:
            return tfile
        store = self._store(frag)
        ext = compression.extension(store)
        dest = self.dests.lookup(frag.ident, frag.rotated, ext, frag.origin)
        if len(self.files) >= MAX_OPEN:
            oldest = min(self.files.values(), key=lambda f: f.last_write)
            self._close_idle(oldest.last_write)
        tfile = self.files[frag.ident] = TailFile(dest, store, self.level)
        if tfile.created:
            self.handler.log.info(
                "new copy %s of %r on %r, beginning at source offset %d",
                dest.path, frag.ident.filename, frag.ident.hostname, dest.origin,
            )  # fmt: skip
        else:
            self.handler.log.debug("opened %s", dest.path)
        return tfile

    def _drop(self, ident: TailIdentity) -> None:
        tfile = self.files.pop(ident, None)
        if tfile is not None:
            tfile.close()

    def _close_idle(self, before: float) -> None:
        idle: List[TailIdentity] = [i for i, f in self.files.items() if f.last_write <= before]
        for ident in idle:
            self._drop(ident)


def _name(body: Dict[str, Any], name: str) -> str:
    """A host or file name of ``body``: no control characters, at most MAX_NAME long."""
    value: str = _typed(body, name, str)
    if CONTROL_CHARS.search(value):
        raise ValueError("control character in %s" % name)
    if len(value) > MAX_NAME:
        raise ValueError("%s longer than %d" % (name, MAX_NAME))
    return value


def _offset(body: Dict[str, Any], name: str, most: int, default: Any = None) -> int:
    """An integer field of ``body`` from 0 to ``most``."""
    value: int = _typed(body, name, int, default)
    if not 0 <= value <= most:
        raise ValueError("%s out of range (0 to %d)" % (name, most))
    return value


def _typed(body: Dict[str, Any], name: str, typ: type, default: Any = None) -> Any:
    """Field ``name`` of ``body``, which must be of ``typ`` (bool is not an int here)."""
    value = body.get(name, default)
    if value is None:
        raise KeyError("missing field %s" % name)
    if not isinstance(value, typ) or isinstance(value, bool):
        raise TypeError("field %s must be %s" % (name, typ.__name__))
    return value
