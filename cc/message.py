"""CC message: the multipart wire format, its validation, and reply builders.

A CC message on the wire is::

    [route id ...] [''] [type] [body] [signature] [blob]

The route is everything before the first empty frame; the type is an ASCII
dotted name; the body a UTF-8 JSON object whose ``req`` equals the type; the
signature and blob are optional.  Routing needs only the type frame, so
:class:`CCMessage` validates the frame layout and type eagerly (cheap, cached)
and leaves the body to the :class:`BodyGate`.

The gate is the one place where a received body is parsed, bounded and, where
the process verifies (``cms-verify-ca``, ``cms-decrypt``, ``cms-time-window``),
verified; it runs on the receive path (server dispatch, a daemon's or client's
socket) before any handler or daemon code sees the message.  Its verdict stays
on the message: :meth:`CCMessage.get_body` returns the body the gate accepted
or raises the :class:`MessageError` it was refused with, so an unverified body
cannot be had where a gate verifies.  A message no gate has seen (one a
client or test built from frames itself) is parsed on first use with the
default bounds, and never counts as checked.
"""

import json
import re
import socket
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import skytools
from skytools.config import ConfigError

from cc.policy import FORBIDDEN, POLICY_OPTIONS, HostSigners, Policy

from cc.errors import CodedError
from cc.options import Option

if TYPE_CHECKING:  # pragma: no cover
    from cc.crypto import CryptoContext

__all__ = [
    "GATE_OPTIONS",
    "BodyGate",
    "BodyLimits",
    "DEFAULT_LIMITS",
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

#: default bound of a JSON body: as large as the largest message (an infofile in the body)
DEFAULT_MAX_BODY_SIZE = 64 << 20
#: default bound of JSON nesting: real bodies nest 3 or 4 deep; Python's parser
#: overflows its recursion limit near 1000
DEFAULT_MAX_BODY_DEPTH = 64

# Types already validated; bounded so that unique types (task.send.<uuid>)
# cannot grow it without limit.
_type_cache: Dict[bytes, str] = {}
_TYPE_CACHE_MAX = 4096


class MessageError(CodedError):
    """A frame list that is not a valid CC message, or a body the gate refused.

    ``code`` is a short machine-readable reason, used in stats keys and in
    ``error`` replies.
    """


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


class BodyLimits:
    """Bounds of a JSON body, applied before it is parsed (``cc-max-body-*`` options).

    ::

        # JSON bodies larger than this (bytes) are refused: body-too-large
        #cc-max-body-size = 64M
        # JSON bodies nested deeper than this are refused: body-too-deep
        #cc-max-body-depth = 64
    """

    __slots__ = ("max_size", "max_depth")

    OPTIONS = (
        Option("cc-max-body-size", "bytes", str(DEFAULT_MAX_BODY_SIZE),
               "JSON bodies larger than this are refused: body-too-large", protects=True),
        Option("cc-max-body-depth", "int", DEFAULT_MAX_BODY_DEPTH,
               "JSON bodies nested deeper than this are refused: body-too-deep", protects=True),
    )  # fmt: skip

    def __init__(
        self, max_size: int = DEFAULT_MAX_BODY_SIZE, max_depth: int = DEFAULT_MAX_BODY_DEPTH
    ) -> None:
        if max_size <= 0 or max_depth <= 0:
            raise ValueError("cc-max-body-size and cc-max-body-depth must be positive")
        self.max_size = max_size
        self.max_depth = max_depth

    @classmethod
    def from_config(cls, cf: skytools.Config) -> "BodyLimits":
        return cls(
            cf.getbytes("cc-max-body-size", str(DEFAULT_MAX_BODY_SIZE)),
            cf.getint("cc-max-body-depth", DEFAULT_MAX_BODY_DEPTH),
        )

    def parse(self, raw: bytes, msgtype: str) -> Dict[str, Any]:
        """Parse a body of a ``msgtype`` message within the bounds; raise :class:`MessageError`.

        Besides the bounds and JSON syntax this checks that the body is an
        object and that its ``req`` equals the type frame: a body moved under
        another type is a hijack attempt and is never acted on.  Only the gate
        (and, inside it, the crypto context) calls this; everyone else gets
        bodies from :meth:`CCMessage.get_body`.
        """
        if len(raw) > self.max_size:
            raise MessageError(
                "body-too-large",
                "body of %d bytes, limit %d (cc-max-body-size)" % (len(raw), self.max_size),
            )
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as ex:
            raise MessageError("bad-body", "body is not valid JSON: %s" % ex) from None
        except RecursionError:  # a bracket bomb: the parser gave up at Python's own limit
            raise MessageError("body-too-deep", "body nests too deep to parse") from None
        if not isinstance(body, dict):
            raise MessageError("bad-body", "body is not a JSON object")
        # fewer containers than the limit cannot nest deeper: most bodies stop here
        containers = raw.count(b"[") + raw.count(b"{")
        if containers > self.max_depth and _nests_deeper(body, self.max_depth):
            raise MessageError(
                "body-too-deep", "body nests deeper than %d (cc-max-body-depth)" % self.max_depth
            )
        if body.get("req") != msgtype:
            raise MessageError(
                "hijacked",
                "hijacked message: req %r does not match type %r"
                % (str(body.get("req"))[:64], msgtype),
            )
        return body


def _nests_deeper(body: Dict[str, Any], limit: int) -> bool:
    """Whether ``body`` has containers more than ``limit`` deep (the body itself is 1)."""
    level: List[Any] = [body]
    depth = 1
    while level:
        if depth > limit:
            return True
        inner: List[Any] = []
        for node in level:
            items = node.values() if isinstance(node, dict) else node
            inner.extend(item for item in items if isinstance(item, (dict, list)))
        level = inner
        depth += 1
    return False


DEFAULT_LIMITS = BodyLimits()

#: verdict of a message routed only to handlers that pass it on unread (proxy,
#: disposer): its body was never opened, so no one here may read it
FORWARDED_UNREAD = MessageError("unread", "body passed on unread: not opened by the gate")


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
        """The body the gate accepted; raise the :class:`MessageError` it was refused with.

        Handlers and daemons only get messages that passed their process's
        :class:`BodyGate`, so this is the verified body wherever one is
        verified.  A message no gate has seen is parsed here (default bounds).
        """
        verdict = self.verdict
        if isinstance(verdict, MessageError):
            raise MessageError(verdict.code, verdict.msg)  # a fresh one: verdicts are shared
        body = self._body
        if body is None:
            body = self._body = DEFAULT_LIMITS.parse(self.body_bytes, self.type)
        return body

    def set_body(self, body: Dict[str, Any], signer: Optional[Dict[str, Any]]) -> None:
        """Record a body checked elsewhere (decrypted, verified) and who signed it."""
        self._body = body
        self.verdict = signer if signer is not None else {}

    @property
    def checked(self) -> bool:
        """Whether the body was accepted by a gate (or the message was made here)."""
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
        msg.set_body(body, None)  # made here: nothing to check
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


#: what a section reads for its gate: the body bounds and the signer policy
GATE_OPTIONS = BodyLimits.OPTIONS + POLICY_OPTIONS


class BodyGate:
    """The one place a received message's body is opened: bounded, and verified where asked.

    ``crypto`` is the process's :class:`~cc.crypto.CryptoContext` (server
    section, or a daemon's or client's own), or None.  With a context that
    verifies, :meth:`open` accepts only what it verifies (and decrypts);
    without one it parses within ``limits``.  With a ``policy`` (the section
    ``policy`` names, see :mod:`cc.policy`) it then accepts a message type
    only from the signers the policy names for it: a refusal is a verdict
    like a bad signature, code ``forbidden``.  Either way the verdict is kept
    on the message, so a message is judged (and counted against the replay
    cache) once however many handlers read it.

    ::

        # section of the signers that may send each message type (needs cms-verify-ca)
        #policy =
        # section of the signers that may act for hosts other than their CN (host pattern =
        # signers); a signer acts for its CN's host only without it
        #host-signers =
    """

    def __init__(
        self,
        crypto: Optional["CryptoContext"] = None,
        limits: BodyLimits = DEFAULT_LIMITS,
        policy: Optional[Policy] = None,
        host_signers: Optional[HostSigners] = None,
    ) -> None:
        if policy is not None and (crypto is None or not crypto.verifying):
            raise ValueError("policy = %s needs cms-verify-ca: it decides on verified signers"
                             % policy.section)  # fmt: skip
        self.crypto = crypto
        self.limits = limits
        self.policy = policy
        #: who may act for hosts other than their CN's, where the process verifies
        self.host_signers = host_signers

    @classmethod
    def from_config(cls, cf: skytools.Config, crypto: Optional["CryptoContext"]) -> "BodyGate":
        try:
            return cls(
                crypto,
                BodyLimits.from_config(cf),
                Policy.from_section(cf, "policy"),
                HostSigners.from_section(cf, "host-signers"),
            )
        except ValueError as ex:
            raise ConfigError("[%s]: %s" % (cf.main_section, ex)) from None

    def open(self, msg: CCMessage) -> Dict[str, Any]:
        """The accepted body of ``msg``; raise (and remember) :class:`MessageError` if refused."""
        verdict = msg.verdict
        if isinstance(verdict, MessageError):
            raise MessageError(verdict.code, verdict.msg)
        if verdict is not None:
            return msg.get_body()
        try:
            if self.crypto is None:
                body = self.limits.parse(msg.body_bytes, msg.type)
                msg.set_body(body, None)
                return body
            body = self.crypto.open(msg, self.limits)
            if self.policy is not None:
                refusal = self.policy.refusal(msg.type, msg.signer)
                if refusal:
                    raise MessageError(FORBIDDEN, refusal)
            return body
        except MessageError as ex:
            msg.verdict = ex
            raise

    def judge(self, msg: CCMessage) -> None:
        """Open ``msg`` now and keep the verdict, refused or not, for :meth:`open`.

        A receive path can judge the messages of one batch back to back (the
        server does: with the crypto code and key still in the CPU's caches,
        a verification costs about a third less) and act on each verdict
        later, at that message's turn; :meth:`open` then neither parses nor
        verifies again, nor counts a signature against the replay cache twice.
        """
        try:
            self.open(msg)
        except MessageError:
            pass  # kept on the message: open() raises it again
