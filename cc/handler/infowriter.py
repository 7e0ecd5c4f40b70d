"""infowriter: store received infofiles under a directory, atomically, newest wins."""

import base64
import binascii
import errno
import functools
import math
import os
import time
from typing import Any, Iterator, Optional

from skytools.config import ConfigError

from cc.files import compression
from cc.files.atomic import write_atomic
from cc.files.paths import UnsafePath, plain_name, safe_join
from cc.files.workerpool import WorkerPool
from cc.handler import CCHandler
from cc.message import CCMessage
from cc.options import REQUIRED, Option
from cc.policy import FORBIDDEN
from cc.ratelog import RateLimitedLog

CC_HANDLER = "InfoWriter"

WRITE_COMPRESSED = ("", "no", "keep", "yes")

#: seconds an infofile's ``mtime`` may be ahead of this host's clock (``max-clock-skew``)
DEFAULT_CLOCK_SKEW = 300.0


def destination_mask(cf: Any) -> str:
    """``dstmask``, or the original's default chosen by ``host-subdirs``."""
    mask = cf.get("dstmask", "")
    if mask:
        return mask
    if cf.getboolean("host-subdirs", False):
        return "%(hostname)s/%(filename)s"
    return "%(hostname)s--%(filename)s"


def relative_path(mask: str, hostname: object, filename: object) -> str:
    """The path a message asks for, relative to ``dstdir``; :class:`UnsafePath` if hostile.

    A hostname is one path component (``/`` in it is refused, not
    rewritten); a filename may have directories (``\\`` read as ``/``), used
    by ``%(filepath)s`` with leading slashes dropped, so that the full source
    paths infosender sends land below the host's directory.
    """
    host = plain_name(hostname, "hostname")
    if "/" in host or "\\" in host:
        raise UnsafePath("hostname %r contains a path separator" % host)
    path = plain_name(filename, "filename")
    fields = {
        "hostname": host,
        "filepath": path.lstrip("/"),
        "filename": path.rsplit("/", 1)[-1],
    }
    try:
        return mask % fields
    except (KeyError, ValueError, TypeError) as ex:
        raise UnsafePath("dstmask %r cannot be filled: %s" % (mask, ex)) from None


class WriteResult:
    """What a worker did with one file, reported back to the loop."""

    def __init__(self, path: str, status: str, nbytes: int = 0) -> None:
        self.path = path
        self.status = status
        self.nbytes = nbytes


class InfoWriter(CCHandler):
    """Writes each ``pub.infofile`` as a whole file under ``dstdir``.

    The file appears atomically (a temporary file renamed over it), with
    the message's ``mtime``; the previous version is kept as
    ``<name><bakext>``; a file is never replaced by an older version.
    Names come from the network and never leave ``dstdir``: hostile ones are
    refused and counted (``infowriter.rejected``).  Writes run on
    ``worker-threads`` threads, one file always on the same thread; at most
    ``queue-size`` messages wait per thread, more are dropped and counted.
    A message with ``ack`` (infosender sends them so) is answered once the
    file is on disk, or already newer there, with ``reply.<type>``; and with
    an ``error`` when it is refused, dropped or fails, so that it is sent again.
    Where the server verifies, a signer writes only as its own host (its
    certificate's CN is the ``hostname``): others are refused (``forbidden``).
    An ``mtime`` more than ``max-clock-skew`` seconds ahead of this host's
    clock is refused (``invalid``): a file from the future would never be
    replaced.  Data that would decompress to more than ``max-file-size`` is refused
    (``too-large``) as soon as the output passes it, and the file on disk
    stays as it was; the output goes to the temporary file a megabyte at a
    time, so a worker never holds a whole decompressed file.

    ::

        [h:infowriter]
        handler = infowriter
        dstdir = /var/lib/cc/info
        # placeholders: %%(hostname)s %%(filename)s %%(filepath)s; empty (the default):
        # %%(hostname)s--%%(filename)s, or with host-subdirs %%(hostname)s/%%(filename)s
        #dstmask = %%(hostname)s--%%(filename)s
        #host-subdirs = no
        # keep the previous version as <name><bakext>; empty (the default): not kept
        #bakext = --prev
        # '' or no: store uncompressed; keep: as sent; yes: with `compression`
        #write-compressed = no
        # needed with write-compressed = yes: gzip or bzip2
        #compression = gzip
        # empty or 0: the library default (gzip 6, bzip2 9)
        #compression-level = 6
        # the most a file may be once decompressed (K, M, G); larger ones are refused
        #max-file-size = 256M
        # seconds an mtime may be ahead of this host's clock; later ones are refused
        #max-clock-skew = 300
        #worker-threads = 10
        #queue-size = 100
    """

    CC_ROLES = ("end-service",)
    OPTIONS = (
        Option("dstdir", "path", REQUIRED, "directory the files go to", example="~/infofiles"),
        Option("dstmask", "str", None, "file name under dstdir, from the message's fields"),
        Option("host-subdirs", "bool", False, "one subdirectory per host"),
        Option("bakext", "str", None, "keep the previous version as <name><bakext>"),
        Option("worker-threads", "int", 10, "threads writing files"),
        Option("queue-size", "int", 100, "writes waiting per thread, at the most"),
        Option("max-clock-skew", "seconds", 300, "an mtime further ahead than this is refused"),
    ) + compression.WRITER_OPTIONS  # fmt: skip

    def __init__(self, hname, hcf, server):
        super().__init__(hname, hcf, server)
        self.dstdir = os.path.abspath(os.path.expanduser(hcf.get("dstdir")))
        self.mask = destination_mask(hcf)
        self.bakext = hcf.get("bakext", "")
        if "/" in self.bakext:
            raise ConfigError("[%s]: bakext must not contain '/'" % hname)
        self.write_compressed = hcf.get("write-compressed", "").strip().lower()
        if self.write_compressed not in WRITE_COMPRESSED:
            raise ConfigError(
                "[%s]: write-compressed = %s: use no, keep or yes" % (hname, self.write_compressed)
            )
        self.compression = ""
        if self.write_compressed == "yes":
            try:
                self.compression = compression.normalize(hcf.get("compression"))
            except ValueError as ex:
                raise ConfigError("[%s]: %s" % (hname, ex)) from None
            if not self.compression:
                raise ConfigError("[%s]: write-compressed = yes needs compression" % hname)
        try:
            self.level = compression.parse_level(hcf.get("compression-level", ""))
        except ValueError as ex:
            raise ConfigError("[%s]: compression-level: %s" % (hname, ex)) from None
        self.max_file_size = hcf.getbytes("max-file-size", compression.MAX_FILE_SIZE)
        if self.max_file_size < 1:
            raise ConfigError("[%s]: max-file-size must be positive" % hname)
        self.clock_skew = hcf.getfloat("max-clock-skew", DEFAULT_CLOCK_SKEW)
        self.ratelog = RateLimitedLog(self.log)
        umask = os.umask(0o022)
        os.umask(umask)
        self.file_mode = 0o666 & ~umask
        self.pool = WorkerPool(
            hname, hcf.getint("worker-threads", 10), hcf.getint("queue-size", 100), self.io_loop
        )

    def handle_msg(self, msg: CCMessage) -> None:
        body = msg.get_body()
        ack = bool(msg.route and body.get("ack"))
        foreign = self.server.foreign_host(msg.signer, body.get("hostname"))
        if foreign:
            self._refuse(msg, ack, FORBIDDEN, "refusing infofile: %s", foreign)
            return
        try:
            relpath = relative_path(self.mask, body.get("hostname"), body.get("filename"))
            comp = compression.normalize(body.get("comp"))
            mtime = float(body["mtime"])
            if not math.isfinite(mtime) or mtime < 0:
                raise ValueError("mtime %r" % body["mtime"])
            if mtime > time.time() + self.clock_skew:
                raise ValueError("mtime %r is ahead of this host's clock by more than "
                                 "max-clock-skew = %g s" % (body["mtime"], self.clock_skew))
        except UnsafePath as ex:
            self._refuse(msg, ack, "rejected", "suspicious file path, skipping: %s", ex)
            return
        except (KeyError, TypeError, ValueError, OverflowError) as ex:
            self._refuse(msg, ack, "invalid", "invalid infofile: %s %s", type(ex).__name__, ex)
            return
        if self.write_compressed == "keep":
            relpath += compression.extension(comp)
        elif self.write_compressed == "yes":
            relpath += compression.extension(self.compression)
        blob = msg.blob
        data = blob if blob else body.get("data") or ""
        done = functools.partial(self._done, msg, ack, relpath)
        if not self.pool.submit(relpath, done, self.write_file, relpath, mtime, comp, data):
            self._refuse(msg, ack, "dropped", "worker queue full, dropping infofile %s", relpath)

    def _refuse(self, msg: CCMessage, ack: bool, what: str, fmt: str, *args: Any) -> None:
        self.stats.inc("infowriter." + what.replace("-", "_"))
        self.ratelog.error(what, fmt, *args)
        if ack:
            self.reply_error(msg, fmt % args, what)

    # -- on a worker thread ----------------------------------------------------------

    def write_file(self, relpath: str, mtime: float, comp: str, data: Any) -> WriteResult:
        """Check the path, decode, and replace the file unless it is as new or newer."""
        path = safe_join(self.dstdir, relpath)
        backup = safe_join(self.dstdir, relpath + self.bakext) if self.bakext else ""
        mtime_ns = round(mtime * 1e9)
        try:
            current: Optional[os.stat_result] = os.lstat(path)
        except FileNotFoundError:
            current = None
        if current is not None and current.st_mtime_ns > mtime_ns:
            return WriteResult(relpath, "older")
        if isinstance(data, str):
            try:
                data = base64.b64decode(data, validate=True)
            except binascii.Error as ex:
                raise ValueError("data is not base64: %s" % ex) from None
        if current is not None and current.st_mtime_ns == mtime_ns:
            if current.st_size == sum(map(len, self._content(data, comp))):
                return WriteResult(relpath, "same")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        keep = functools.partial(_keep_backup, path, backup) if backup else None
        content = self._content(data, comp)
        nbytes = write_atomic(
            path, content, mode=self.file_mode, mtime_ns=mtime_ns, before_replace=keep
        )
        return WriteResult(relpath, "written", nbytes)

    def _content(self, data: bytes, comp: str) -> Iterator[bytes]:
        """The file's bytes, a piece at a time."""
        if self.write_compressed in ("", "no"):
            return compression.decompress_pieces(data, comp, self.max_file_size)
        if self.write_compressed == "yes" and comp != self.compression:
            return compression.compress_pieces(
                compression.decompress_pieces(data, comp, self.max_file_size),
                self.compression,
                self.level,
            )
        return iter((data,))  # stored as received, never decompressed here

    # -- back on the loop -------------------------------------------------------------

    def _done(
        self,
        msg: CCMessage,
        ack: bool,
        relpath: str,
        result: Optional[WriteResult],
        error: Optional[BaseException],
    ) -> None:
        if error is not None:
            if isinstance(error, UnsafePath):
                self._refuse(msg, ack, "rejected", "suspicious file path, skipping: %s", error)
            elif isinstance(error, compression.TooLarge):
                self._refuse(msg, ack, "too-large", "refusing infofile %s: %s", relpath, error)
            else:
                self._refuse(msg, ack, "failed", "cannot write infofile: %s", error)
            return
        assert result is not None
        if ack:
            self.reply(msg, "reply." + msg.type, path=result.path, status=result.status)
        if result.status == "written":
            self.stats.inc("written_files")
            self.stats.inc("written_bytes", result.nbytes)
        else:
            self.stats.inc("infowriter.skipped")
            self.log.debug("%s: mtime %s, skipping", result.path, result.status)

    def stop(self):
        return self.pool.stop()


def _keep_backup(path: str, backup: str) -> None:
    try:
        os.unlink(backup)
    except FileNotFoundError:
        pass
    try:
        os.link(path, backup, follow_symlinks=False)
    except FileNotFoundError:
        pass  # first version: nothing to keep
    except OSError as ex:
        if ex.errno != errno.EEXIST:
            raise
