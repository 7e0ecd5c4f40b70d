"""Just enough DER to walk a CMS signature and splice one together without building trees.

asn1crypto builds an object per element, which costs ten times the RSA
operation on every message; the signed path instead reads element bounds
from the input bytes (so what is signed over and what is compared are the
sender's own bytes, never a re-encoding) and writes the few per-message
elements around a template.  Everything here is definite-length DER;
BER (indefinite lengths, as ``openssl cms -stream`` writes) raises
:class:`NotDER` so that the caller can normalise it once with asn1crypto.
"""

from typing import List, Tuple

__all__ = ["NotDER", "Element", "read", "children", "expect", "tlv", "OID"]

#: tags used by CMS
SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
OID_TAG = 0x06
UTC_TIME = 0x17
CONTEXT_0 = 0xA0  # [0] constructed
CONTEXT_1 = 0xA1
CONTEXT_0_PRIMITIVE = 0x80

#: an element: (tag, header start, content start, end)
Element = Tuple[int, int, int, int]


class NotDER(ValueError):
    """BER that is valid but not DER (indefinite length, constructed string)."""


def read(data: bytes, pos: int, limit: int) -> Element:
    """The element starting at ``pos``, which must end exactly at ``limit``."""
    (element,) = children(data, (0, pos, pos, limit))
    return element


def children(data: bytes, parent: Element) -> List[Element]:
    """The elements inside a constructed ``parent``; ValueError if they do not fill it."""
    found = []
    pos, end = parent[2], parent[3]
    while pos < end:
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
                raise NotDER("indefinite length at %d" % pos)
            if size > 4:
                raise ValueError("length of %d bytes at %d" % (size, pos))
            n = int.from_bytes(data[start : start + size], "big")
            start += size
        stop = start + n
        if stop > end:
            raise ValueError("element at %d runs past its container" % pos)
        found.append((tag, pos, start, stop))
        pos = stop
    return found


def expect(element: Element, tag: int, what: str) -> Element:
    """``element`` if it has ``tag``; ValueError naming ``what`` otherwise."""
    if element[0] != tag:
        if tag == OCTET_STRING and element[0] == OCTET_STRING | 0x20:
            raise NotDER("constructed OCTET STRING for %s" % what)
        raise ValueError("%s: tag 0x%02x, expected 0x%02x" % (what, element[0], tag))
    return element


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
