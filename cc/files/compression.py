"""The compression methods messages carry in ``comp``: none, gzip, bzip2.

One place for the names, the file extensions and the (de)compressors, so
that senders and writers agree.  Data from the network is decompressed
with a limit: a few kilobytes can claim gigabytes (a decompression bomb),
so output is produced incrementally and refused once past the limit, before
more is allocated.
"""

import bz2
import gzip
import zlib
from typing import Callable, Dict, List, Optional, Union

__all__ = [
    "compress",
    "decompress",
    "extension",
    "normalize",
    "parse_level",
    "TooLarge",
    "METHODS",
    "MAX_FILE_SIZE",
]

#: default of the writers' ``max-file-size``: the most one message's data may decompress to
MAX_FILE_SIZE = "256M"

#: zlib ``wbits`` for a gzip member (header and trailer checked, as gzip.decompress does)
GZIP_WBITS = 16 + zlib.MAX_WBITS

Decompressor = Union["zlib._Decompress", bz2.BZ2Decompressor]

#: method -> file extension
METHODS: Dict[str, str] = {"gzip": ".gz", "bzip2": ".bz2"}

#: what "no compression" may be called in configs and messages
NONE_NAMES = ("", "none", "no")


def normalize(method: Optional[str]) -> str:
    """``''`` for no compression, else a key of :data:`METHODS`; ValueError if unknown."""
    if method is not None and not isinstance(method, str):
        raise ValueError("compression %r is not a name" % (method,))
    method = (method or "").strip().lower()
    if method in NONE_NAMES:
        return ""
    if method not in METHODS:
        raise ValueError("unknown compression %r (use none, gzip or bzip2)" % method)
    return method


def compress(data: bytes, method: Optional[str], level: Optional[int] = None) -> bytes:
    method = normalize(method)
    if method == "gzip":
        return gzip.compress(data, 6 if not level else level)
    if method == "bzip2":
        return bz2.compress(data, 9 if not level else level)
    return data


class TooLarge(ValueError):
    """Data that decompresses to more than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__("decompresses to more than %d bytes" % limit)
        self.limit = limit


def decompress(data: bytes, method: Optional[str], limit: int) -> bytes:
    """``data`` decompressed; :class:`TooLarge` once the output passes ``limit`` bytes.

    Never holds more than ``limit`` (+1) bytes of output.  Concatenated
    members or streams are read as gzip and bz2 read them; corrupt or
    truncated data raises ``zlib.error``, ``OSError`` or ``EOFError``.
    """
    method = normalize(method)
    if not method:
        if len(data) > limit:
            raise TooLarge(limit)
        return data
    new: Callable[[], Decompressor] = (
        bz2.BZ2Decompressor if method == "bzip2" else lambda: zlib.decompressobj(GZIP_WBITS)
    )
    parts: List[bytes] = []
    room = limit
    while data:
        member = new()
        # asking for one byte more than there is room for tells "too large" from "fits"
        out = member.decompress(data, room + 1)
        room -= len(out)
        if room < 0:
            raise TooLarge(limit)
        parts.append(out)
        if not member.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")
        data = member.unused_data
        if method == "gzip":
            data = data.lstrip(b"\0")  # padding between members, as gzip.decompress skips it
    return b"".join(parts)


def extension(method: Optional[str]) -> str:
    return METHODS.get(normalize(method), "")


def parse_level(text: Optional[str]) -> Optional[int]:
    """``compression-level`` from a config: ``''`` or 0 mean the library default (None)."""
    text = (text or "").strip()
    if not text:
        return None
    level = int(text)
    return level or None
