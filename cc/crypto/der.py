"""Just enough DER to walk a CMS signature and splice one together without building trees.

asn1crypto builds an object per element, which costs ten times the RSA
operation on every message; the signed path instead reads element bounds
from the input bytes (so what is signed over and what is compared are the
sender's own bytes, never a re-encoding) and writes the few per-message
elements around a template.

Only DER is read: an indefinite or non-minimal length, a high tag number, a
non-minimal INTEGER or bytes after the last element raise ValueError.  One
encoding per value is what lets a verifier compare bytes, and what keeps a
re-encoded signature from looking like another message.
"""

from typing import List, Optional, Tuple

__all__ = ["Element", "TooMany", "read", "check", "children", "expect", "integer", "tlv", "OID"]

#: tags used by CMS
SEQUENCE = 0x30
SET = 0x31
BOOLEAN = 0x01
INTEGER = 0x02
NULL = 0x05
OCTET_STRING = 0x04
OID_TAG = 0x06
UTC_TIME = 0x17
CONTEXT_0 = 0xA0  # [0] constructed
CONTEXT_1 = 0xA1
CONTEXT_3 = 0xA3
CONTEXT_0_PRIMITIVE = 0x80

#: an element: (tag, header start, content start, end)
Element = Tuple[int, int, int, int]


class TooMany(ValueError):
    """More elements than the caller's limit."""


def read(data: bytes, pos: int, limit: int) -> Element:
    """The element starting at ``pos``, which must end exactly at ``limit``."""
    (element,) = children(data, (0, pos, pos, limit))
    return element


def children(data: bytes, parent: Element, limit: Optional[int] = None) -> List[Element]:
    """The elements inside a constructed ``parent``; ValueError if they do not fill it,
    or if there are more than ``limit`` (checked as they are read)."""
    found: List[Element] = []
    pos, end = parent[2], parent[3]
    while pos < end:
        if limit is not None and len(found) >= limit:
            raise TooMany("more than %d elements at %d" % (limit, parent[1]))
        if pos + 2 > end:
            raise ValueError("truncated element at %d" % pos)
        tag = data[pos]
        if tag & 0x1F == 0x1F:
            raise ValueError("high tag number at %d" % pos)
        n = data[pos + 1]
        start = pos + 2
        if n & 0x80:
            size = n & 0x7F
            if size == 0:
                raise ValueError("indefinite length (BER) at %d" % pos)
            if size > 4 or start + size > end:
                raise ValueError("length of %d bytes at %d" % (size, pos))
            n = int.from_bytes(data[start : start + size], "big")
            if n < 0x80 or data[start] == 0:
                raise ValueError("non-minimal length at %d" % pos)
            start += size
        stop = start + n
        if stop > end:
            raise ValueError("element at %d runs past its container" % pos)
        found.append((tag, pos, start, stop))
        pos = stop
    return found


def check(data: bytes) -> Element:
    """The one element ``data`` holds, after checking that it is DER all the way down
    (every constructed element's content; primitive contents are the reader's)."""
    top = read(data, 0, len(data))
    pending = [top]
    while pending:
        element = pending.pop()
        if element[0] & 0x20:
            pending.extend(children(data, element))
    return top


def expect(element: Element, tag: int, what: str) -> Element:
    """``element`` if it has ``tag``; ValueError naming ``what`` otherwise."""
    if element[0] != tag:
        raise ValueError("%s: tag 0x%02x, expected 0x%02x" % (what, element[0], tag))
    return element


def integer(data: bytes, element: Element, what: str) -> int:
    """The value of an INTEGER ``element`` in its one DER encoding (no redundant sign byte)."""
    value = content(data, expect(element, INTEGER, what))
    if not value or (len(value) > 1 and (value[0], value[1] >> 7) in ((0, 0), (0xFF, 1))):
        raise ValueError("%s: INTEGER not minimally encoded" % what)
    return int.from_bytes(value, "big", signed=True)


def content(data: bytes, element: Element) -> bytes:
    return data[element[2] : element[3]]


def whole(data: bytes, element: Element) -> bytes:
    """The element's encoding, header included."""
    return data[element[1] : element[3]]


def tlv(tag: int, value: bytes) -> bytes:
    """``value`` encoded under ``tag`` with a DER length."""
    n = len(value)
    if n < 0x80:
        return bytes((tag, n)) + value
    size = (n.bit_length() + 7) // 8
    return bytes((tag, 0x80 | size)) + n.to_bytes(size, "big") + value


def OID(dotted: str) -> bytes:
    """The content bytes of an OBJECT IDENTIFIER, for comparing with what was read."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)
