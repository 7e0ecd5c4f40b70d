"""The compression methods messages carry in ``comp``: none, gzip, bzip2.

One place for the names, the file extensions and the (de)compressors, so
that senders and writers agree.  Data from the network is decompressed
with a limit: a few kilobytes can claim gigabytes (a decompression bomb),
so output is produced incrementally and refused once past the limit, before
more is allocated.
"""

import bz2
import zlib
from typing import Dict, Iterable, Iterator, List, Optional, Union

from cc.options import Option

__all__ = [
    "WRITER_OPTIONS",
    "compress",
    "compress_pieces",
    "decompress",
    "decompress_pieces",
    "extension",
    "normalize",
    "parse_level",
    "TooLarge",
    "METHODS",
    "MAX_FILE_SIZE",
]

#: default of the writers' ``max-file-size``: the most one message's data may decompress to
MAX_FILE_SIZE = "256M"

#: how a writer (infowriter, tailwriter) stores what it receives, declared once for both
WRITER_OPTIONS = (
    Option("write-compressed", "str", None, "'' or no: uncompressed; keep: as sent; yes: with"
           " compression"),
    Option("compression", "str", "gzip", "with write-compressed = yes: gzip or bzip2"),
    Option("compression-level", "str", None, "empty or 0: the library's default"),
    Option("max-file-size", "bytes", MAX_FILE_SIZE, "files larger than this are refused"),
)  # fmt: skip

#: output bytes asked of a decompressor at a time
PIECE = 1024 * 1024

#: zlib ``wbits`` for a gzip member (header and trailer checked, as gzip.decompress does)
GZIP_WBITS = 16 + zlib.MAX_WBITS

Decompressor = Union["zlib._Decompress", bz2.BZ2Decompressor]
Compressor = Union["zlib._Compress", bz2.BZ2Compressor]

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
    return b"".join(compress_pieces((data,), method, level))


def compress_pieces(
    pieces: Iterable[bytes], method: Optional[str], level: Optional[int] = None
) -> Iterator[bytes]:
    """``pieces`` compressed as they come (gzip level 6, bzip2 level 9 unless ``level``)."""
    method = normalize(method)
    if not method:
        yield from pieces
        return
    compressor: Compressor = (
        bz2.BZ2Compressor(level or 9)
        if method == "bzip2"
        else zlib.compressobj(level or 6, zlib.DEFLATED, GZIP_WBITS)
    )
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


class TooLarge(ValueError):
    """Data that decompresses to more than the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__("decompresses to more than %d bytes" % limit)
        self.limit = limit


def decompress(data: bytes, method: Optional[str], limit: int) -> bytes:
    """``data`` decompressed; :class:`TooLarge` once the output passes ``limit`` bytes.

    Data that fits is joined at the end (twice its size for a moment); a
    writer that can take the output piece by piece uses :func:`decompress_pieces`.
    """
    parts: List[bytes] = []
    try:
        parts.extend(decompress_pieces(data, method, limit))
    except TooLarge:
        # the traceback keeps this frame alive (a worker holds its last error): let go first
        del parts[:]
        raise
    return b"".join(parts)


def decompress_pieces(data: bytes, method: Optional[str], limit: int) -> Iterator[bytes]:
    """``data`` decompressed a :data:`PIECE` at a time; :class:`TooLarge` once the output
    passes ``limit`` bytes, before more is allocated.

    Concatenated members or streams are read as gzip and bz2 read them;
    corrupt or truncated data raises ``zlib.error``, ``OSError`` or ``EOFError``.
    """
    method = normalize(method)
    if not method:
        if len(data) > limit:
            raise TooLarge(limit)
        yield data
        return
    room = limit
    for piece in _pieces(data, method):
        room -= len(piece)
        if room < 0:
            raise TooLarge(limit)
        yield piece


def _pieces(data: bytes, method: str) -> Iterator[bytes]:
    """The output of ``data``, member after member, at most PIECE bytes at a time."""
    while data:
        member: Decompressor = (
            bz2.BZ2Decompressor() if method == "bzip2" else zlib.decompressobj(GZIP_WBITS)
        )
        piece = member.decompress(data, PIECE)
        while True:
            yield piece
            if member.eof:
                break
            # zlib hands back unread input; bz2 keeps it and continues from b""
            piece = member.decompress(getattr(member, "unconsumed_tail", b""), PIECE)
            if not piece and not member.eof:
                raise EOFError("compressed data ended before the end-of-stream marker")
        data = member.unused_data
        if method == "gzip":
            data = data.lstrip(b"\0")  # padding between members, as gzip.decompress skips it


def extension(method: Optional[str]) -> str:
    return METHODS.get(normalize(method), "")


def parse_level(text: Optional[str]) -> Optional[int]:
    """``compression-level`` from a config: ``''`` or 0 mean the library default (None)."""
    text = (text or "").strip()
    if not text:
        return None
    level = int(text)
    return level or None
