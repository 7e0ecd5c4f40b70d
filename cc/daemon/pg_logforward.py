"""pg_logforward: receive PostgreSQL's log records over UDP and hand them to plug-ins.

The PostgreSQL extension pg_logforward sends each log record as one UDP
datagram: a run of tnetstrings, one per field in a fixed order.  Records are
given to every plug-in (``plugins``); the built-in
``cc.daemon.plugins.pg_logforward.forward`` sends them on as ``log.<level>``,
the original's ``example_logwatch`` turns some into ``log.add`` database
calls.  A plug-in that cannot be loaded is a logged error of its section,
not a reason to stop.
A datagram that does not parse is counted (``pg_logforward.invalid``) and
dropped, never fatal.
"""

import logging
import socket
import time
from typing import Any, Dict, List, Optional

from skytools import tnetstrings
from skytools.config import ConfigError
from tornado.ioloop import IOLoop

from cc.daemon import CCDaemon, run_daemon
from cc.daemon.plugins import load_plugins
from cc.daemon.plugins.pg_logforward import PgLogForwardPlugin
from cc.options import REQUIRED, Option
from cc.ratelog import RateLimitedLog

__all__ = ["PgLogForward", "parse_netstr", "FIELDS"]

CC_DAEMON = "PgLogForward"

#: the extension's fields, in the order it sends them
FIELDS = (
    "elevel",
    "sqlerrcode",
    "username",
    "database",
    "remotehost",
    "funcname",
    "message",
    "detail",
    "hint",
    "context",
    "debug_query_string",
)
#: fields up to ``message`` must be there
MIN_FIELDS = FIELDS.index("message") + 1

ELEVELS = {
    10: "DEBUG5",
    11: "DEBUG4",
    12: "DEBUG3",
    13: "DEBUG2",
    14: "DEBUG1",
    15: "LOG",
    16: "COMMERROR",
    17: "INFO",
    18: "NOTICE",
    19: "WARNING",
    20: "ERROR",
    21: "FATAL",
    22: "PANIC",
}

MAX_DATAGRAM = 8192
#: datagrams read per wake-up before the loop gets a turn
READ_BATCH = 500


def unpack_sqlstate(code: int) -> str:
    """PostgreSQL's packed SQLSTATE (MAKE_SQLSTATE) as its five characters."""
    chars = []
    for _ in range(5):
        chars.append(chr((code & 0x3F) + ord("0")))
        code >>= 6
    return "".join(chars)


def parse_netstr(data: bytes) -> Dict[str, Any]:
    """One datagram as a record; ValueError if it is not one."""
    # the datagram is a run of tnetstrings: read it as the body of a tnetstring list
    values = tnetstrings.loads(b"%d:%s]" % (len(data), data))
    if len(values) < MIN_FIELDS or not all(v is None or isinstance(v, str) for v in values):
        raise ValueError("%d fields, need %d strings" % (len(values), MIN_FIELDS))
    record: Dict[str, Any] = dict(zip(FIELDS, values))
    record["elevel"] = int(record["elevel"])
    record["elevel_text"] = ELEVELS.get(record["elevel"], "LEVEL%d" % record["elevel"])
    code = record.get("sqlerrcode")
    if code is not None and code.isdigit():
        record["sqlerrcode"] = int(code)
        record["sqlstate"] = unpack_sqlstate(int(code))
    return record


class PgLogForward(CCDaemon):
    """UDP listener for pg_logforward's ``netstr`` format.

    ::

        [d:pg_logforward]
        listen-host = 127.0.0.1
        # 0 picks a free port (logged)
        listen-port = 23456
        # only netstr, as the original
        log-format = netstr
        # warn about each datagram that does not parse (rate-limited)
        #log-parsing-errors = no
        plugins = p:forward

        [p:forward]
        module = cc.daemon.plugins.pg_logforward.forward
    """

    OPTIONS = (
        Option("log-format", "enum", REQUIRED, "netstr", choices=("netstr",), example="netstr"),
        Option("log-parsing-errors", "bool", False, "log records that do not parse"),
        Option("listen-host", "str", REQUIRED, "UDP address to listen on", example="127.0.0.1"),
        Option("listen-port", "int", REQUIRED, "UDP port to listen on", example="23456"),
        Option("plugins", "list", REQUIRED, "the plug-in sections", example="p:forward"),
    )  # fmt: skip

    sock: Optional[socket.socket] = None
    plugins: List[PgLogForwardPlugin] = []

    def start_work(self) -> None:
        self.log_format = self.cf.get("log-format")
        if self.log_format != "netstr":
            raise ConfigError("log-format = %s: only netstr is supported" % self.log_format)
        self.log_parsing_errors = self.cf.getboolean("log-parsing-errors", False)
        self._ratelog = RateLimitedLog(self.log)
        self.plugins = load_plugins(
            self,
            PgLogForwardPlugin,
            lambda cls: self.log_format in cls.LOG_FORMATS,
            self.log_format,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((self.cf.get("listen-host"), self.cf.getint("listen-port")))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.io_loop.add_handler(sock.fileno(), self._on_readable, IOLoop.READ)
        self.log.info("listening on udp://%s:%d", *sock.getsockname()[:2])

    def _on_readable(self, fd: int, events: int) -> None:
        assert self.sock is not None
        for _ in range(READ_BATCH):
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            self._take(data)

    def _take(self, data: bytes) -> None:
        started = time.perf_counter()
        self.stats.inc("pg_logforward.count")
        self.stats.inc("pg_logforward.bytes", len(data))
        try:
            record = parse_netstr(data)
        except (ValueError, TypeError) as ex:
            self.stats.inc("pg_logforward.invalid")
            if self.log_parsing_errors:
                self._ratelog.warning("parse", "cannot parse datagram: %s: %r", ex, data[:200])
            return
        for plugin in self.plugins:
            try:
                plugin.process(record)
            except Exception:
                self.stats.inc("pg_logforward.plugin_failed")
                self._ratelog.log_limited(
                    logging.ERROR,
                    "plugin:" + plugin.name,
                    "plugin %s failed",
                    plugin.name,
                    exc_info=True,
                )
        self.stats.inc("pg_logforward.seconds", time.perf_counter() - started)

    def stop_work(self) -> None:
        for plugin in self.plugins:
            plugin.stop()
        if self.sock is not None:
            self.io_loop.remove_handler(self.sock.fileno())
            self.sock.close()
            self.sock = None


if __name__ == "__main__":
    run_daemon(PgLogForward)
