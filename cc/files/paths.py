"""Destination paths from untrusted messages, kept inside a directory.

Writers (infowriter, tailwriter, logwriter) build a file name from a
message's hostname and filename; both come from the network.  The result
must stay inside ``dstdir``: no ``..``, no absolute paths, no empty names, no
sibling directory that merely shares the prefix (``/srv/info`` vs
``/srv/infoX``), and no symlink inside ``dstdir`` that points out of it.
"""

import os
import re

__all__ = ["UnsafePath", "safe_join", "clean_name"]


#: what :func:`plain_name` refuses
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class UnsafePath(ValueError):
    """A path that would leave the destination directory."""


def clean_name(name: object, what: str = "name") -> str:
    """A non-empty path fragment from a message, with ``\\`` read as ``/`` (as the original)."""
    if not isinstance(name, str) or not name.strip():
        raise UnsafePath("empty or missing %s" % what)
    if "\0" in name:
        raise UnsafePath("NUL byte in %s" % what)
    return name.replace("\\", "/")


def plain_name(name: object, what: str = "name") -> str:
    """:func:`clean_name`, refusing control characters too: a newline in a file name
    forges lines in every listing and log that shows it."""
    cleaned = clean_name(name, what)
    if _CONTROL.search(cleaned):
        raise UnsafePath("control character in %s %r" % (what, cleaned[:100]))
    return cleaned


def safe_join(dstdir: str, relpath: str) -> str:
    """``dstdir/relpath``, or :class:`UnsafePath` if that is not strictly inside ``dstdir``.

    ``dstdir`` may be relative; the check is done on resolved real paths,
    component by component, so symlinks already inside ``dstdir`` that lead
    out are refused too.  The returned path is absolute.
    """
    if os.path.isabs(relpath):
        raise UnsafePath("absolute path %r" % relpath)
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath("path %r has empty, '.' or '..' components" % relpath)
    root = os.path.realpath(dstdir)
    target = os.path.join(root, *parts)
    resolved = os.path.realpath(target)
    if os.path.commonpath([root, resolved]) != root or resolved == root:
        raise UnsafePath("path %r leaves %s" % (relpath, dstdir))
    return target
