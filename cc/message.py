"""CC message: the multipart wire format, its validation, and reply builders.

A CC message on the wire is::

    [route id ...] [''] [type] [body] [signature] [blob]

The route is everything before the first empty frame; the type is an ASCII
dotted name; the body a UTF-8 JSON object whose ``req`` equals the type; the
signature and blob are optional.  Routing needs only the type frame, so
:class:`CCMessage` validates the frame layout and type eagerly (cheap, cached)
and parses the JSON body lazily, once, when a handler asks for it.
"""

import json
import re
import socket
import time
from typing import Any, Dict, List, Optional, Sequence, Union

__all__ = [
    "CCMessage",
    "MessageError",
    "MAX_TYPE_LENGTH",
    "MAX_ROUTE_DEPTH",
    "is_valid_type",
    "set_hostname",
]

#: the type frame: dot-separated components of letters, digits, ``_`` and ``-``
TYPE_RE = re.compile(rb"[a-zA-Z0-9_-]+(?:\.[a-zA-Z0-9_-]+)*\Z")
MAX_TYPE_LENGTH = 255
#: more route ids than this means a routing loop or garbage, not a real topology
MAX_ROUTE_DEPTH = 32
#: after the delimiter: type, body, and optionally signature and blob
MIN_PAYLOAD_FRAMES = 2
MAX_PAYLOAD_FRAMES = 4

#: the ``hostname`` that messages built here carry; see :func:`set_hostname`
HOSTNAME = socket.gethostname()

# Types already validated; bounded so that unique types (task.send.<uuid>)
# cannot grow it without limit.
_type_cache: Dict[bytes, str] = {}
_TYPE_CACHE_MAX = 4096


class MessageError(ValueError):
    """A frame list that is not a valid CC message.

    ``code`` is a short machine-readable reason, used in stats keys and in
    ``error`` replies.
    """

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def set_hostname(name: str) -> None:
    """Name this process's host in the messages it builds (``[ccserver] hostname``).

    Set once at start by the server and each daemon: a host is named as its
    operator knows it, and one machine can play many hosts in tests.
    """
    global HOSTNAME
    HOSTNAME = name


def is_valid_type(msgtype: str) -> bool:
    """Tell whether ``msgtype`` is a well-formed message type (also used for ``msg-suffix``)."""
    raw = msgtype.encode("ascii", "replace")
    return len(raw) <= MAX_TYPE_LENGTH and TYPE_RE.match(raw) is not None


def _check_type(raw: bytes) -> str:
    name = _type_cache.get(raw)
    if name is not None:
        return name
    if not raw:
        raise MessageError("bad-type", "empty message type")
    if len(raw) > MAX_TYPE_LENGTH:
        raise MessageError("bad-type", "message type longer than %d bytes" % MAX_TYPE_LENGTH)
    if TYPE_RE.match(raw) is None:
        raise MessageError("bad-type", "invalid message type %r" % raw[:64])
    if len(_type_cache) >= _TYPE_CACHE_MAX:
        _type_cache.clear()
    name = _type_cache[raw] = raw.decode("ascii")
    return name


class CCMessage:
    """One CC message: validated frames, with the body parsed on demand.

    The frame list is treated as immutable: handlers that need another route
    build a new message with :meth:`with_route`, so every handler on a route
    sees the message as it arrived.
    """

    __slots__ = ("frames", "rpos", "type", "_body", "verdict")

    def __init__(self, frames: List[bytes]) -> None:
        try:
            rpos = frames.index(b"")
        except ValueError:
            raise MessageError("bad-frames", "no empty delimiter frame") from None
        if rpos > MAX_ROUTE_DEPTH:
            raise MessageError("bad-frames", "route deeper than %d hops" % MAX_ROUTE_DEPTH)
        npayload = len(frames) - rpos - 1
        if npayload < MIN_PAYLOAD_FRAMES:
            raise MessageError("bad-frames", "missing %s frame" % ("type", "body")[npayload])
        if npayload > MAX_PAYLOAD_FRAMES:
            raise MessageError("bad-frames", "%d frames after the delimiter, at most 4" % npayload)
        self.type = _check_type(frames[rpos + 1])
        self.frames = frames
        self.rpos = rpos
        self._body: Optional[Dict[str, Any]] = None
        #: None until checked; then the signer's details (``{}`` when unsigned)
        #: or the :class:`MessageError` it was rejected with
        self.verdict: Union[None, Dict[str, Any], MessageError] = None

    # -- frames ------------------------------------------------------------

    @property
    def route(self) -> List[bytes]:
        """Route ids, outermost (last hop) first."""
        return self.frames[: self.rpos]

    @property
    def body_bytes(self) -> bytes:
        return self.frames[self.rpos + 2]

    @property
    def signature(self) -> bytes:
        """Signature frame, ``b''`` when unsigned or absent."""
        pos = self.rpos + 3
        return self.frames[pos] if pos < len(self.frames) else b""

    @property
    def blob(self) -> Optional[bytes]:
        """Blob frame, or None when absent (an empty blob frame is ``b''``)."""
        pos = self.rpos + 4
        return self.frames[pos] if pos < len(self.frames) else None

    @property
    def size(self) -> int:
        """Bytes in all frames, the unit of every ``bytes.*`` counter."""
        return sum(map(len, self.frames))

    # -- body --------------------------------------------------------------

    def get_body(self) -> Dict[str, Any]:
        """Parse and check the JSON body (once); raise :class:`MessageError` if invalid.

        This does not check signatures: handlers get bodies through
        :meth:`cc.handler.CCHandler.get_body`, which does where configured.
        """
        body = self._body
        if body is None:
            body = self._body = self.parse_body(self.body_bytes, self.type)
        return body

    @staticmethod
    def parse_body(raw: bytes, msgtype: str) -> Dict[str, Any]:
        """Parse a body of a ``msgtype`` message; raise :class:`MessageError` if invalid.

        Besides JSON syntax this checks that the body is an object and that
        its ``req`` equals the type frame: a body moved under another type is
        a hijack attempt and is never acted on.
        """
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as ex:
            raise MessageError("bad-body", "body is not valid JSON: %s" % ex) from None
        if not isinstance(body, dict):
            raise MessageError("bad-body", "body is not a JSON object")
        if body.get("req") != msgtype:
            raise MessageError(
                "hijacked",
                "hijacked message: req %r does not match type %r"
                % (str(body.get("req"))[:64], msgtype),
            )
        return body

    def set_body(self, body: Dict[str, Any], signer: Optional[Dict[str, Any]]) -> None:
        """Record a body checked elsewhere (decrypted, verified) and who signed it."""
        self._body = body
        self.verdict = signer if signer is not None else {}

    @property
    def checked(self) -> bool:
        """Whether the body was accepted by a crypto check (see :mod:`cc.crypto`)."""
        return isinstance(self.verdict, dict)

    @property
    def signer(self) -> Optional[Dict[str, Any]]:
        """Details of the verified signer's certificate (``CN``, ``subject``, ...), or None."""
        verdict = self.verdict
        return verdict if isinstance(verdict, dict) and verdict else None

    # -- building ------------------------------------------------------------

    @classmethod
    def build(
        cls,
        msgtype: str,
        fields: Optional[Dict[str, Any]] = None,
        route: Sequence[bytes] = (),
        blob: Optional[bytes] = None,
        signature: bytes = b"",
    ) -> "CCMessage":
        """Make a message of ``msgtype`` from body ``fields``.

        ``req``, ``time`` and ``hostname`` are filled in unless given.
        """
        body = {"req": msgtype, "time": time.time(), "hostname": HOSTNAME}
        if fields:
            body.update(fields)
            body["req"] = msgtype
        frames = list(route)
        frames.append(b"")
        frames.append(msgtype.encode("ascii"))
        frames.append(json.dumps(body).encode("utf8"))
        frames.append(signature)
        if blob is not None:
            frames.append(blob)
        msg = cls(frames)
        msg._body = body
        return msg

    def reply(
        self, msgtype: str, fields: Optional[Dict[str, Any]] = None, blob: Optional[bytes] = None
    ) -> "CCMessage":
        """Build a message of ``msgtype`` addressed back along this message's route."""
        return self.build(msgtype, fields, route=self.route, blob=blob)

    def error_reply(self, msg: str, code: str) -> "CCMessage":
        """Build an ``error`` reply (fields ``msg`` and ``code``) to this message."""
        return self.reply("error", {"msg": msg, "code": code, "orig_req": self.type})

    def with_route(self, route: Sequence[bytes]) -> "CCMessage":
        """The same message with another route."""
        copy = CCMessage.__new__(CCMessage)
        copy.frames = list(route) + self.frames[self.rpos :]
        copy.rpos = len(route)
        copy.type = self.type
        copy._body = self._body
        copy.verdict = self.verdict
        return copy

    def __repr__(self) -> str:
        text = "CCMessage(%s, route=%r, body=%r)" % (self.type, self.route, self.body_bytes)
        return text if len(text) <= 300 else text[:300] + "..."
