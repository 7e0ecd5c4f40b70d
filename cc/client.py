"""Blocking client API for scripts, and the ``cc-send`` command.

::

    with CCClient("tcp://127.0.0.1:22632") as client:
        client.publish("log.info", {"log_level": "INFO", "log_msg": "hello", ...})
        reply = client.query("echo.request", {"target": "x"}, timeout=5)

Code on an IOLoop (daemons, handlers) uses :class:`cc.reqstream.CCReqStream`
instead; this one blocks the calling thread, with a timeout on every wait.
"""

import argparse
import itertools
import json
import os
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

import skytools
import zmq
from skytools.config import ConfigError

from cc.crypto import ENC_MARK, CryptoContext
from cc.message import BodyGate, CCMessage, MessageError
from cc.msgtypes import wants_reply
from cc.options import REQUIRED, Option, parse_value

__all__ = ["CCClient", "QueryTimeout", "main"]


class QueryTimeout(Exception):
    """No reply within the timeout."""


class CCClient:
    """A DEALER connection to a cc-server for publishing and querying."""

    def __init__(
        self,
        url: str,
        context: Optional[zmq.Context] = None,
        hwm: int = 100,
        linger: int = 500,
        crypto: Optional[CryptoContext] = None,
    ) -> None:
        self.url = url
        self.crypto = crypto
        #: replies are opened here: verified where ``crypto`` verifies
        self.gate = BodyGate(crypto)
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.SNDHWM, hwm)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, linger)
        self.socket.connect(url)
        self._ids = itertools.count(1)
        self._prefix = b"Q%d-" % os.getpid()

    def publish(
        self, msgtype: str, fields: Optional[Dict[str, Any]] = None, blob: Optional[bytes] = None
    ) -> None:
        """Send a message that expects no reply."""
        self.send(CCMessage.build(msgtype, fields, blob=blob))

    def send(self, msg: CCMessage, timeout: float = 10.0) -> None:
        """Send a built message (sealed by ``crypto``, if given); raise QueryTimeout if the
        socket stays full."""
        if self.crypto is not None:
            msg = self.crypto.seal(msg)
        if not self.socket.poll(int(timeout * 1000), zmq.POLLOUT):
            raise QueryTimeout("cannot send to %s within %.1f s" % (self.url, timeout))
        self.socket.send_multipart(msg.frames)

    def query(
        self,
        msgtype: str,
        fields: Optional[Dict[str, Any]] = None,
        blob: Optional[bytes] = None,
        timeout: float = 10.0,
    ) -> CCMessage:
        """Send a request and return the first reply; raise QueryTimeout."""
        for reply in self.query_replies(msgtype, fields, blob, timeout):
            return reply
        raise QueryTimeout("no reply from %s within %.1f s" % (self.url, timeout))

    def query_replies(
        self,
        msgtype: str,
        fields: Optional[Dict[str, Any]] = None,
        blob: Optional[bytes] = None,
        timeout: float = 10.0,
        reply_timeout: Optional[float] = None,
    ) -> Iterator[CCMessage]:
        """Send a request and yield its replies until none comes for ``timeout`` seconds.

        After the first reply the wait for each next one is ``reply_timeout``
        (default: ``timeout``), for requests that report progress.
        """
        qid = self._prefix + b"%d" % next(self._ids)
        self.send(CCMessage.build(msgtype, fields, route=[qid], blob=blob), timeout)
        while True:
            reply = self._recv_reply(qid, timeout)
            if reply is None:
                return
            yield reply
            if reply_timeout is not None:
                timeout = reply_timeout

    def _recv_reply(self, qid: bytes, timeout: float) -> Optional[CCMessage]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.socket.poll(int(left * 1000) + 1, zmq.POLLIN):
                return None
            frames = self.socket.recv_multipart()
            try:
                msg = CCMessage(frames)
                if msg.route == [qid]:
                    self.gate.open(msg)
                    return msg
            except MessageError:
                continue  # not a reply that passes the gate: keep waiting for one that does

    def close(self) -> None:
        self.socket.close()
        if self._own_context:
            self.context.term()

    def __enter__(self) -> "CCClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_fields(items: Sequence[str]) -> Dict[str, Any]:
    """``key=text`` gives a string, ``key:=json`` any JSON value."""
    fields: Dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("%r: expected key=value or key:=json" % item)
        if key.endswith(":"):
            key = key[:-1]
            try:
                fields[key] = json.loads(value)
            except ValueError as ex:
                raise ValueError("%s: not JSON: %s" % (item, ex)) from None
        else:
            fields[key] = value
        if not key:
            raise ValueError("%r: empty field name" % item)
    return fields


EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE, EXIT_ERROR_REPLY = 0, 1, 2, 3

#: cc-send's first argument
URL = Option("url", "url", REQUIRED, "cc-server socket", example="tcp://127.0.0.1:22632")


def main(argv: Optional[List[str]] = None) -> None:
    """``cc-send``: send one message of any type, print the replies."""
    parser = argparse.ArgumentParser(
        prog="cc-send",
        description="Send a CC message and print its replies. "
        "Exit 0 when a reply came (or none was expected), 1 on timeout, 3 on an error reply.",
    )
    parser.add_argument("url", help="cc-server socket, e.g. tcp://127.0.0.1:22632")
    parser.add_argument("type", help="message type, e.g. echo.request or log.info")
    parser.add_argument(
        "fields", nargs="*", metavar="field", help="body fields: key=string or key:=json"
    )
    parser.add_argument("-t", "--timeout", type=float, default=10.0, help="seconds to wait")
    wait = parser.add_mutually_exclusive_group()
    wait.add_argument("-w", "--wait", action="store_true", help="wait for a reply")
    wait.add_argument("-n", "--no-wait", action="store_true", help="do not wait for a reply")
    parser.add_argument("-a", "--all", action="store_true", help="print every reply until timeout")
    parser.add_argument("--blob", help="file to send as the blob frame")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only reply bodies")
    parser.add_argument("-c", "--config", help="INI file with cms-* options to sign with")
    parser.add_argument("--section", default="taskclient", help="its section (taskclient)")
    args = parser.parse_args(argv)
    crypto = None
    try:
        parse_value(URL, args.url)
    except ValueError as ex:
        parser.error("%s: %s" % (args.url, ex))
    try:
        fields = parse_fields(args.fields)
        CCMessage.build(args.type, fields)  # validates the type
        if args.config:
            crypto = CryptoContext.from_config(skytools.Config(args.section, args.config))
    except (ValueError, MessageError, ConfigError) as ex:
        parser.error(str(ex))
    blob = None
    if args.blob:
        try:
            with open(args.blob, "rb") as f:
                blob = f.read()
        except OSError as ex:
            parser.error("--blob %s: %s" % (args.blob, ex.strerror))
    expect_reply = args.wait or (not args.no_wait and wants_reply(args.type, [b"x"]))
    with CCClient(args.url, crypto=crypto) as client:
        try:
            if not expect_reply:
                client.publish(args.type, fields, blob)
                sys.exit(EXIT_OK)
            code = EXIT_TIMEOUT
            for reply in client.query_replies(args.type, fields, blob, args.timeout):
                raw = reply.body_bytes
                sealed = raw == ENC_MARK  # decrypted by the gate: print what it opened
                body = json.dumps(reply.get_body()) if sealed else raw.decode("utf8", "replace")
                print(body if args.quiet else "%s %s" % (reply.type, body), flush=True)
                code = EXIT_ERROR_REPLY if reply.type == "error" else EXIT_OK
                if not args.all:
                    break
        except QueryTimeout as ex:
            print("cc-send: %s" % ex, file=sys.stderr)
            sys.exit(EXIT_TIMEOUT)
    if code == EXIT_TIMEOUT:
        print("cc-send: no reply within %.1f s" % args.timeout, file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
