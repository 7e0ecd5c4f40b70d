"""The small handlers: filter, delay, disposer, locallogger, echo's ping-remotes."""

import time

from harness import CCTestCase, ccserver_section

from cc.message import CCMessage


def log_msg(text, msgtype="log.info"):
    return CCMessage.build(
        msgtype,
        {
            "log_level": msgtype.split(".")[1].upper(),
            "service_type": "t",
            "job_name": "j",
            "log_msg": text,
            "log_time": time.time(),
            "log_pid": 1,
        },
    ).frames


class TestFilter(CCTestCase):
    def test_include_and_exclude(self):
        server = self.start_server(
            "f",
            ccserver_section("f") + """
[routes]
* = h:filter

[h:filter]
handler = filter
forward-to = h:log
include = log.*, pub.info*
exclude = log.debug

[h:log]
handler = locallogger
""",
        )
        sock = self.dealer(server.endpoint)
        sock.send_multipart(log_msg("PASSED-INFO"))
        sock.send_multipart(log_msg("BLOCKED-DEBUG", "log.debug"))
        sock.send_multipart(
            CCMessage.build("pub.infofile", {"log_level": "X", "log_msg": "PASSED-PUB"}).frames
        )
        sock.send_multipart(
            CCMessage.build("db.x", {"log_level": "X", "log_msg": "BLOCKED-DB"}).frames
        )
        server.wait_stat("filter.count", 4)
        server.wait_log("PASSED-INFO")
        server.wait_log("PASSED-PUB")
        totals = server.stats_total()
        self.assertEqual(totals["filter.count.ok"], 2)
        self.assertEqual(totals["filter.count.dropped"], 2)
        self.assertNotIn("BLOCKED", server.output())


DELAY = """
[routes]
log = h:delay

[h:delay]
handler = delay
forward-to = h:target
{options}

[h:target]
handler = {target}
"""


class TestDelay(CCTestCase):
    def start_delay(self, target, **options):
        text = "\n".join("%s = %s" % (k.replace("_", "-"), v) for k, v in options.items())
        return self.start_server("d", ccserver_section("d") + DELAY, options=text, target=target)

    def test_messages_held_then_passed_in_order(self):
        server = self.start_delay("locallogger", delay=1)
        sock = self.dealer(server.endpoint)
        sent = time.monotonic()
        for i in range(5):
            sock.send_multipart(log_msg("delayed-%d" % i))
        server.wait_stat("delay.count", 5)
        self.assertNotIn("delayed-0", server.output())
        server.wait_log("delayed-4")
        self.assertGreaterEqual(time.monotonic() - sent, 1.0)
        out = server.output()
        positions = [out.index("delayed-%d" % i) for i in range(5)]
        self.assertEqual(positions, sorted(positions))

    def test_queue_is_bounded(self):
        server = self.start_delay("disposer", delay=60, queue_size=3)
        sock = self.dealer(server.endpoint)
        for i in range(10):
            sock.send_multipart(log_msg("m%d" % i))
        self.assertEqual(server.wait_stat("delay.count.dropped", 7), 7)

    def test_held_messages_passed_on_at_stop(self):
        server = self.start_delay("locallogger", delay=60)
        self.dealer(server.endpoint).send_multipart(log_msg("HELD"))
        server.wait_stat("delay.count", 1)
        self.assertEqual(server.stop(), 0)
        self.assertIn("HELD", server.output())


class TestDisposerAndLogger(CCTestCase):
    def test_disposer_counts(self):
        server = self.start_server(
            "x",
            ccserver_section("x") + """
[routes]
* = h:drop

[h:drop]
handler = disposer
""",
        )
        sock = self.dealer(server.endpoint)
        for i in range(4):
            sock.send_multipart(log_msg("m"))
        self.assertEqual(server.wait_stat("disposed_count", 4), 4)
        self.assertGreater(server.stats_total()["disposed_bytes"], 4 * 50)

    def test_locallogger_format_and_non_log(self):
        server = self.start_server(
            "x",
            ccserver_section("x") + """
[routes]
* = h:log

[h:log]
handler = locallogger
""",
        )
        sock = self.dealer(server.endpoint)
        sock.send_multipart(log_msg("hello world", "log.warning"))
        sock.send_multipart(CCMessage.build("pub.stats", {"x": 1}).frames)
        server.wait_log(r"\[j@\S+\] \d\d:\d\d:\d\d,\d{3} WARNING hello world")
        server.wait_log(r"non-log msg: pub\.stats")


class TestEchoPing(CCTestCase):
    def test_ping_remotes(self):
        target = self.start_server(
            "t",
            ccserver_section("t") + """
[routes]
echo = h:echo

[h:echo]
handler = echo
""",
        )
        watcher = self.start_server(
            "w",
            ccserver_section("w") + """
[routes]
echo = h:echo

[h:echo]
handler = echo
ping-remotes = {target}, tcp://127.0.0.1:9
ping-period = 0.1
""",
            target=target.endpoint,
        )
        watcher.wait_stat("ping.received", 3)
        watcher.wait_log(r"no pong from tcp://127\.0\.0\.1:9 for")
        self.assertNotIn("no pong from %s" % target.endpoint, watcher.output())
