"""Replace a file all or nothing, with the durability the caller asks for.

Every file cc rewrites goes through :func:`write_atomic`: the content goes to
a temporary file of its own in the same directory, which is then renamed over
the old one, so a reader sees the old version or the new, never a part.

Durability, as promised:

* ``durable=False`` (status files rewritten every period: infofile, stats,
  pidfiles, infowriter's copies that the next version replaces anyway): a
  crash of the process leaves the old or the new version; a power loss may
  lose the newest write.
* ``durable=True`` (state that must survive a power loss: logtail's position,
  tailwriter's file map): the data is on disk before the rename (file
  fsync) and the rename is on disk before the call returns (directory fsync).
"""

import os
import secrets
from typing import Callable, Iterable, Optional, Union

__all__ = ["write_atomic"]


def write_atomic(
    path: str,
    data: Union[bytes, str, Iterable[bytes]],
    durable: bool = False,
    mode: Optional[int] = None,
    mtime_ns: Optional[int] = None,
    before_replace: Optional[Callable[[], None]] = None,
) -> int:
    """Replace ``path`` with ``data``; the number of bytes written.

    ``data`` is bytes, text (written as UTF-8) or pieces of bytes written as
    they come (an error from them leaves ``path`` as it was).

    :param durable: fsync the file, and the directory after the rename
    :param mode: the new file's permission bits (default: 0666 less the umask)
    :param mtime_ns: the new file's modification time, set before it appears
    :param before_replace: called just before the rename (e.g. to keep a backup)
    """
    dirname, name = os.path.split(path)
    # a name of its own: writers on other threads or processes never share a temporary file
    tmp = os.path.join(dirname, ".%s.%s.new" % (name[:64], secrets.token_hex(6)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            if isinstance(data, (bytes, str)):
                data = (data.encode("utf8") if isinstance(data, str) else data,)
            size = 0
            for piece in data:
                size += f.write(piece)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mtime_ns is not None:
            os.utime(tmp, ns=(mtime_ns, mtime_ns))
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        dirfd = os.open(dirname or ".", os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    return size
