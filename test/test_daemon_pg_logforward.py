"""pg_logforward: netstring datagrams become log records; garbage is counted, never fatal."""

import json
import os
import re
import socket

from daemonproc import DaemonTestCase
from harness import ccserver_section, wait_for

from cc.daemon.pg_logforward import parse_netstr, unpack_sqlstate
from cc.message import CCMessage

LOCAL = ccserver_section("local", role="local") + """
[routes]
log = h:proxy
pub.stats = h:proxy

[h:proxy]
handler = proxy
remote-cc = {sink}

[d:pglf]
listen-host = 127.0.0.1
listen-port = 0
log-format = netstr
log-parsing-errors = yes
stats-period = 0.2
plugins = p:forward, p:audit

[p:forward]
module = cc.daemon.plugins.pg_logforward.forward

[p:audit]
module = cc.daemon.plugins.pg_logforward.forward
msg-type = log.audit.pg
"""

# ERRCODE_UNDEFINED_TABLE as PostgreSQL packs it: MAKE_SQLSTATE('4','2','P','0','1')
UNDEFINED_TABLE = sum((ord(c) - ord("0")) << (6 * i) for i, c in enumerate("42P01"))


def netstr(*values):
    """A datagram as the extension writes it: one tnetstring per field, nulls as ``0:~``."""
    out = b""
    for value in values:
        if value is None:
            out += b"0:~"
        else:
            data = str(value).encode("utf8")
            out += b"%d:%s," % (len(data), data)
    return out


WATCH = ccserver_section("local", role="local") + """
[routes]
db = h:proxy
log = h:proxy

[h:proxy]
handler = proxy
remote-cc = {sink}

[d:pglf]
listen-host = 127.0.0.1
listen-port = 0
log-format = netstr
plugins = p:gone, p:logwatch, p:nomodule

[p:logwatch]
module = cc.daemon.plugins.pg_logforward.example_logwatch

[p:gone]
module = cc.daemon.plugins.pg_logforward.no_such_plugin

[p:nomodule]
"""


class TestPgLogForward(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.sink, self.sink_url = self.make_sink()

    def next_msg(self, check):
        """The first message at the sink for which ``check(msg, body)`` is true."""

        def one():
            msg = CCMessage(self.recv(self.sink))
            return check(msg, msg.get_body()) and msg

        return wait_for(one, what="a matching message at the sink")

    def udp_port(self):
        path = os.path.join(self.tmp, "d_pglf.out")

        def port():
            with open(path, encoding="utf8", errors="replace") as f:
                m = re.search(r"listening on udp://127\.0\.0\.1:(\d+)", f.read())
            return m and int(m.group(1))

        return wait_for(port, what="pg_logforward to listen")

    def test_records_forwarded_garbage_counted(self):
        local = self.start_server("local", LOCAL, sink=self.sink_url)
        proc = self.start_daemon(local, "pg_logforward", "d:pglf")
        port = self.udp_port()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        for garbage in (b"", b"hello", b"5:abc,", b"3:abc,2:xy,", b"999:x", b"\xff" * 50):
            udp.sendto(garbage, ("127.0.0.1", port))
        fields = ["20", UNDEFINED_TABLE, "alice", "appdb", "10.1.2.3", "parserOpenTable"]
        fields += ['relation "nosuch" does not exist', None, None, None, "select * from nosuch"]
        udp.sendto(netstr(*fields), ("127.0.0.1", port))
        msg = self.next_msg(lambda m, b: m.type == "log.error" and b["service_type"] == "postgres")
        body = msg.get_body()
        self.assertEqual(body["log_msg"], 'relation "nosuch" does not exist')
        self.assertEqual(body["pg_level"], "ERROR")
        self.assertEqual(body["sqlstate"], "42P01")
        self.assertEqual((body["username"], body["database"]), ("alice", "appdb"))
        self.assertEqual(body["debug_query_string"], "select * from nosuch")
        self.assertIsNone(body["detail"])
        self.assertEqual(body["job_name"], "local.d:pglf")
        # the second plugin section sends the same record as its configured type
        self.next_msg(lambda m, b: m.type == "log.audit.pg" and b["log_level"] == "ERROR")
        record = netstr("15", "0", "bob", "db", None, "f", "checkpoint starting")
        udp.sendto(record, ("127.0.0.1", port))
        self.next_msg(lambda m, b: m.type == "log.info" and b["log_msg"] == "checkpoint starting")
        # garbage: counted in the daemon's pub.stats, and the daemon is still fine
        self.next_msg(
            lambda m, b: m.type == "pub.stats"
            and b["job_name"] == "local.d:pglf"
            and b["totals"].get("pg_logforward.invalid") == 6
            and b["totals"].get("pg_logforward.count") == 8
        )
        self.assertEqual(proc.proc.poll(), None)
        self.assertEqual(proc.stop(), 0)

    def test_parse_netstr(self):
        record = parse_netstr(netstr("19", "0", "u", "d", "h", "f", "careful", "more"))
        self.assertEqual(record["elevel_text"], "WARNING")
        self.assertEqual(record["detail"], "more")
        self.assertIsNone(record.get("hint"))
        self.assertEqual(unpack_sqlstate(UNDEFINED_TABLE), "42P01")
        for bad in (b"", netstr("x", "0", "u", "d", "h", "f", "m"), netstr("19", "0", "u")):
            with self.assertRaises(ValueError):
                parse_netstr(bad)

    def test_wrong_log_format_stops_the_daemon(self):
        local = self.start_server(
            "local", LOCAL.replace("log-format = netstr", "log-format = json"), sink=self.sink_url
        )
        proc = self.start_daemon(local, "pg_logforward", "d:pglf")
        proc.expected_exit = 1
        self.assertEqual(proc.proc.wait(10), 1)

    def test_logwatch_calls_log_add_and_broken_plugins_are_logged(self):
        local = self.start_server("local", WATCH, sink=self.sink_url)
        proc = self.start_daemon(local, "pg_logforward", "d:pglf")
        port = self.udp_port()
        output = proc.output()
        self.assertRegex(output, r"plugin p:gone not loaded: cannot load plug-in .*no_such_plugin")
        self.assertRegex(output, r"plugin p:nomodule not loaded: .*module")
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(udp.close)
        records = [
            ("15", "0", "bob", "", "10.0.0.5", "f", "checkpoint starting"),
            ("15", "0", "bob", "", "10.0.0.5", "f", "checkpoint complete"),  # within 300 s
            ("15", "0", "bob", "appdb", "10.0.0.5", "ProcSleep",
             "process 4711 still waiting for ShareLock on relation 16384 of database 1 "
             "after 1000.1 ms"),
            ("18", "0", "bob", "appdb", "10.0.0.5", "f", "a notice"),  # not forwarded
            ("20", UNDEFINED_TABLE, "alice", "appdb", "10.1.2.3", "f", "no such table"),
        ]  # fmt: skip
        for record in records:
            udp.sendto(netstr(*record), ("127.0.0.1", port))
        calls = []
        for _ in range(3):
            msg = self.next_msg(lambda m, b: m.type == "db.confdb")
            body = msg.get_body()
            self.assertEqual(body["function"], "log.add")
            self.assertNotIn("return", body)
            calls.append(json.loads(body["params"]))
        host = socket.gethostname()
        self.assertEqual(
            calls,
            [
                [host, None, "postgres_monitoring", "INFO", "postgres",
                 "bob 10.0.0.5: checkpoint starting"],
                [host, None, "postgres_monitoring", "WARNING", "appdb",
                 "bob 10.0.0.5: ShareLock lock waits"],
                [host, None, "postgres_monitoring", "ERROR", "appdb",
                 "alice 10.1.2.3: no such table"],
            ],
        )  # fmt: skip
        self.assertIsNone(proc.proc.poll())
        self.assertEqual(proc.stop(), 0)
