"""Edits of DER CMS structures, as an attacker with a captured message would make them.

A signature or envelope is parsed into a tree of :class:`Node`; an edit changes a
node and the tree is encoded again (the lengths of every parent follow).  Two uses:

* :func:`signature_variants` and :func:`envelope_variants`: re-encodings of one
  captured message that ``openssl cms -verify`` still accepts (the replay tests);
* :func:`mutants`: seeded random and structure-aware damage of every field
  (the differential test against openssl).

Only test code: the tree is built with a parser of its own, not cc's (OIDs are
encoded with :func:`cc.crypto.der.OID`, which the differential test covers).
"""

import random
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from asn1crypto import pem

from cc.crypto import der

SEQUENCE, SET, INTEGER, NULL, OCTET_STRING, OID = 0x30, 0x31, 0x02, 0x05, 0x04, 0x06
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def length_bytes(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    size = (n.bit_length() + 7) // 8
    return bytes([0x80 | size]) + n.to_bytes(size, "big")


class Node:
    """One element: a tag and either children (constructed) or content bytes.

    ``header`` replaces the encoded tag and length when set (non-minimal or
    indefinite lengths); ``trailer`` follows the content (``00 00`` for BER).
    """

    def __init__(self, tag: int, content: bytes = b"", kids: Optional[List["Node"]] = None):
        self.tag = tag
        self.content = content
        self.kids = kids
        self.header: Optional[bytes] = None
        self.trailer = b""

    def body(self) -> bytes:
        return b"".join(k.encode() for k in self.kids) if self.kids is not None else self.content

    def encode(self) -> bytes:
        body = self.body()
        header = self.header
        if header is None:
            header = bytes([self.tag]) + length_bytes(len(body))
        return header + body + self.trailer

    def walk(self) -> Iterator[Tuple["Node", Optional["Node"]]]:
        """Every node with its parent, depth first."""
        stack: List[Tuple[Node, Optional[Node]]] = [(self, None)]
        while stack:
            node, parent = stack.pop()
            yield node, parent
            for kid in reversed(node.kids or []):
                stack.append((kid, node))

    def copy(self) -> "Node":
        return parse(self.encode())


def parse(data: bytes) -> Node:
    node, end = _parse(data, 0)
    if end != len(data):
        raise ValueError("trailing bytes")
    return node


def _parse(data: bytes, pos: int) -> Tuple[Node, int]:
    tag = data[pos]
    n = data[pos + 1]
    start = pos + 2
    if n & 0x80:
        size = n & 0x7F
        n = int.from_bytes(data[start : start + size], "big")
        start += size
    stop = start + n
    if tag & 0x20:
        kids = []
        at = start
        while at < stop:
            kid, at = _parse(data, at)
            kids.append(kid)
        return Node(tag, kids=kids), stop
    return Node(tag, data[start:stop]), stop


def oid(dotted: str) -> Node:
    return Node(OID, der.OID(dotted))


def integer(value: int) -> Node:
    return Node(INTEGER, value.to_bytes((value.bit_length() + 8) // 8 or 1, "big", signed=True))


# -- where things are in a signed-data ------------------------------------------------


def signed_data(top: Node) -> Node:
    return top.kids[1].kids[0]


def signer_info(top: Node) -> Node:
    return signed_data(top).kids[-1].kids[0]


def certificates(top: Node) -> Node:
    return next(k for k in signed_data(top).kids if k.tag == 0xA0)


def der_of_pem(path: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    return pem.unarmor(data)[2] if pem.detect(data) else data


# -- re-encodings of one captured signature -----------------------------------------------


def edited(data: bytes, edits: Dict[str, Callable[[Node], None]]) -> Dict[str, bytes]:
    """Each edit applied to a fresh tree of ``data``, by name."""
    out = {}
    for name, edit in edits.items():
        tree = parse(data)
        edit(tree)
        out[name] = tree.encode()
    return out


def _toggle_null(alg: Node) -> None:
    if len(alg.kids) > 1:
        del alg.kids[1:]
    else:
        alg.kids.append(Node(NULL))


def _other_string_type(name: Node) -> None:
    """The first UTF8String in ``name`` as a PrintableString, or the other way."""
    for node, _ in name.walk():
        if node.tag in (0x0C, 0x13):
            node.tag = 0x13 if node.tag == 0x0C else 0x0C
            return
    raise ValueError("no string in the name")


def _other_case(name: Node) -> None:
    for node, _ in name.walk():
        if node.tag in (0x0C, 0x13):
            node.content = node.content.swapcase()
            return
    raise ValueError("no string in the name")


def _set_versions(top: Node, version: int) -> None:
    signed_data(top).kids[0] = integer(version)
    signer_info(top).kids[0] = integer(version)


def _by_key_identifier(top: Node, key_id: bytes) -> None:
    signer_info(top).kids[1] = Node(0x80, key_id)
    _set_versions(top, 3)


def _ecdsa_twin(top: Node) -> None:
    value = signer_info(top).kids[-1]
    sig = parse(value.content)
    s = int.from_bytes(sig.kids[1].content, "big")
    sig.kids[1] = integer(P256_ORDER - s)
    value.content = sig.encode()


def _ber_outer(top: Node) -> None:
    top.header = bytes([top.tag, 0x80])
    top.trailer = b"\x00\x00"


def _non_minimal_length(top: Node) -> None:
    body = top.body()
    top.header = bytes([top.tag, 0x84]) + len(body).to_bytes(4, "big")


def signature_variants(
    signature: bytes,
    body: bytes,
    extra_cert: bytes,
    crl: bytes,
    key_id: bytes,
) -> Dict[str, bytes]:
    """Re-encodings of a detached RSA ``signature`` (openssl's, signed attributes, two
    certificates) of ``body``, each named after what was changed.  ``extra_cert``, ``crl``
    (DER) are added where asked; ``key_id`` is the signer's subjectKeyIdentifier."""
    edits: Dict[str, Callable[[Node], None]] = {
        "extra-certificate": lambda t: certificates(t).kids.append(parse(extra_cert)),
        "certificates-reordered": lambda t: certificates(t).kids.reverse(),
        "crl-added": lambda t: signed_data(t).kids.insert(4, Node(0xA1, kids=[parse(crl)])),
        "unsigned-attrs": lambda t: signer_info(t).kids.append(
            Node(0xA1, kids=[Node(SEQUENCE, kids=[oid("1.2.3.4"), Node(SET, kids=[Node(NULL)])])])
        ),
        "ber-indefinite-length": _ber_outer,
        "non-minimal-length": _non_minimal_length,
        "attached-content": lambda t: signed_data(t)
        .kids[2]
        .kids.append(Node(0xA0, kids=[Node(OCTET_STRING, body)])),
        "signed-data-version": lambda t: signed_data(t).kids.__setitem__(0, integer(3)),
        "signer-info-version": lambda t: signer_info(t).kids.__setitem__(0, integer(3)),
        "digest-null-toggled": lambda t: _toggle_null(signer_info(t).kids[2]),
        "signature-algorithm-null-toggled": lambda t: _toggle_null(signer_info(t).kids[-2]),
        "digest-algorithm-added": lambda t: signed_data(t)
        .kids[1]
        .kids.append(Node(SEQUENCE, kids=[oid("2.16.840.1.101.3.4.2.3")])),
        "signer-by-key-identifier": lambda t: _by_key_identifier(t, key_id),
        "issuer-other-string-type": lambda t: _other_string_type(signer_info(t).kids[1].kids[0]),
        "issuer-other-case": lambda t: _other_case(signer_info(t).kids[1].kids[0]),
        "signature-algorithm-oid": lambda t: signer_info(t)
        .kids[-2]
        .kids.__setitem__(0, oid("1.2.840.113549.1.1.11")),
    }
    variants = edited(signature, edits)
    variants["trailing-bytes"] = signature + b"\x00\x00"
    return variants


def ecdsa_twin(signature: bytes) -> bytes:
    """The same P-256 signature with s replaced by n - s, which verifies as well."""
    tree = parse(signature)
    _ecdsa_twin(tree)
    return tree.encode()


def envelope_variants(envelope: bytes) -> Dict[str, bytes]:
    """Re-encodings of an openssl enveloped-data (one key-transport recipient)."""

    def enveloped(t: Node) -> Node:
        return t.kids[1].kids[0]

    def decoy(t: Node) -> None:
        recipients = enveloped(t).kids[1]
        other = recipients.kids[0].copy()
        serial = other.kids[1].kids[1]
        serial.content = bytes([serial.content[0] ^ 0x01]) + serial.content[1:]
        recipients.kids.insert(0, other)

    def unprotected(t: Node) -> None:
        enveloped(t).kids.append(
            Node(0xA1, kids=[Node(SEQUENCE, kids=[oid("1.2.3.4"), Node(SET, kids=[Node(NULL)])])])
        )

    edits: Dict[str, Callable[[Node], None]] = {
        "envelope-ber-length": _ber_outer,
        "envelope-decoy-recipient": decoy,
        "envelope-unprotected-attrs": unprotected,
    }
    variants = edited(envelope, edits)
    variants["envelope-trailing-bytes"] = envelope + b"\x00"
    return variants


# -- damage, for the differential test ------------------------------------------------


def _structural(tree: Node, rng: random.Random) -> str:
    """One structure-aware edit of a random node; returns what it did."""
    nodes = list(tree.walk())
    node, parent = nodes[rng.randrange(len(nodes))]
    choice = rng.randrange(12)
    if choice == 0:
        node.tag ^= 1 << rng.randrange(8)
        return "tag"
    if choice == 1 and parent is not None:
        parent.kids.remove(node)
        return "delete"
    if choice == 2 and parent is not None:
        parent.kids.insert(parent.kids.index(node), node.copy())
        return "duplicate"
    if choice == 3 and parent is not None and len(parent.kids) > 1:
        i = rng.randrange(len(parent.kids))
        j = rng.randrange(len(parent.kids))
        parent.kids[i], parent.kids[j] = parent.kids[j], parent.kids[i]
        return "swap"
    if choice == 4:
        body = node.body()
        size = max(rng.choice((1, 2, 4)), (len(body).bit_length() + 7) // 8)
        node.header = bytes([node.tag, 0x80 | size]) + len(body).to_bytes(size, "big")
        return "long-length"
    if choice == 5:
        body = node.body()
        delta = rng.choice((-2, -1, 1, 2))
        node.header = bytes([node.tag]) + length_bytes(max(0, len(body) + delta))
        return "wrong-length"
    if choice == 6 and node.kids is None and node.content:
        content = bytearray(node.content)
        content[rng.randrange(len(content))] ^= 1 << rng.randrange(8)
        node.content = bytes(content)
        return "content-bit"
    if choice == 7 and node.kids is None:
        node.content = node.content[: rng.randrange(len(node.content) + 1)]
        return "content-cut"
    if choice == 8 and node.tag == INTEGER:
        node.content = b"\x00" + node.content
        return "integer-padded"
    if choice == 9 and node.kids is not None:
        node.kids.append(rng.choice((Node(NULL), integer(rng.randrange(256)), oid("1.2.3.4"))))
        return "append-child"
    if choice == 10 and node.kids is not None and node.kids:
        node.kids.pop()
        return "drop-last-child"
    if choice == 11:
        node.header = bytes([node.tag, 0x80])
        node.trailer = b"\x00\x00"
        return "indefinite"
    return "none"


def _bytewise(data: bytes, rng: random.Random) -> Tuple[bytes, str]:
    choice = rng.randrange(4)
    if choice == 0:
        out = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        return bytes(out), "bit-flips"
    if choice == 1:
        return data[: rng.randrange(len(data))], "truncated"
    if choice == 2:
        at = rng.randrange(len(data))
        return data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[
            at:
        ], "inserted"
    return data + bytes(rng.randint(1, 4)), "trailing"


def mutants(signature: bytes, seed: int, count: int) -> Iterator[Tuple[str, bytes]]:
    """``count`` damaged copies of ``signature``: a third byte-level, the rest one to
    three structure-aware edits; each named by its edits (reproducible by ``seed``)."""
    rng = random.Random(seed)
    for i in range(count):
        if i % 3 == 0:
            data, what = _bytewise(signature, rng)
            yield "%d:%s" % (i, what), data
            continue
        tree = parse(signature)
        edits = []
        for _ in range(rng.randint(1, 3)):
            try:
                edits.append(_structural(tree, rng))
            except (ValueError, IndexError):  # a copy of a node already made non-DER
                edits.append("none")
        yield "%d:%s" % (i, "+".join(edits)), tree.encode()
