"""The compression methods messages carry in ``comp``: none, gzip, bzip2.

One place for the names, the file extensions and the (de)compressors, so
that senders and writers agree.
"""

import bz2
import gzip
from typing import Dict, Optional

__all__ = ["compress", "decompress", "extension", "normalize", "parse_level", "METHODS"]

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


def decompress(data: bytes, method: Optional[str]) -> bytes:
    method = normalize(method)
    if method == "gzip":
        return gzip.decompress(data)
    if method == "bzip2":
        return bz2.decompress(data)
    return data


def extension(method: Optional[str]) -> str:
    return METHODS.get(normalize(method), "")


def parse_level(text: Optional[str]) -> Optional[int]:
    """``compression-level`` from a config: ``''`` or 0 mean the library default (None)."""
    text = (text or "").strip()
    if not text:
        return None
    level = int(text)
    return level or None
