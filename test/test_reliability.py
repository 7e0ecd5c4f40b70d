"""Many peers and bounded memory, against a real server."""

import os
import resource

import zmq
from harness import CCTestCase, ccserver_section, wait_for

from cc.message import CCMessage

ECHO_AND_DEAD_PROXY = """
[routes]
echo = h:echo
log = h:proxy

[h:echo]
handler = echo

[h:proxy]
handler = proxy
remote-cc = tcp://127.0.0.1:9
"""


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for %d" % pid)


class TestManyPeers(CCTestCase):
    PEERS = 1000

    def test_thousand_clients_all_answered(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 3 * self.PEERS + 100:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * self.PEERS), hard))
        self.context.setsockopt(zmq.MAX_SOCKETS, self.PEERS + 100)
        server = self.start_server("many", ccserver_section("many") + ECHO_AND_DEAD_PROXY)
        server.wait_log(r"file descriptor limit \d+")
        clients = [self.dealer(server.endpoint) for _ in range(self.PEERS)]
        for n, sock in enumerate(clients):
            msg = CCMessage.build("echo.request", {"target": "c%d" % n}, route=[b"Q%d" % n])
            sock.send_multipart(msg.frames)
        for n, sock in enumerate(clients):
            reply = CCMessage(self.recv(sock))
            self.assertEqual(reply.route, [b"Q%d" % n])
            self.assertEqual(reply.get_body()["orig_target"], "c%d" % n)
        server.wait_stat("count.ok", self.PEERS)


class TestSlowReader(CCTestCase):
    def test_a_burst_of_replies_waits_for_a_client_still_sending(self):
        """Replies beyond the peer's pipe wait for it (bounded) instead of being dropped."""
        # zmq_hwm = 100 (the default): the pipe to a peer holds 100, as many more may wait
        ini = ccserver_section("slow") + "zmq_sndbuf = 65536\n" + ECHO_AND_DEAD_PROXY
        server = self.start_server("slow", ini)
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 10)
        sock.setsockopt(zmq.RCVBUF, 65536)
        sock.connect(server.endpoint)
        self.sockets.append(sock)
        n, pad = 180, "x" * 30000  # more replies than the pipe, buffers and client hold
        for i in range(n):
            msg = CCMessage.build("echo.request", {"target": "%d:%s" % (i, pad)},
                                  route=[b"Q%d" % i])  # fmt: skip
            sock.send_multipart(msg.frames)
        server.wait_stat("count.waited.peer_full", 1)
        for i in range(n):
            reply = CCMessage(self.recv(sock))
            self.assertEqual(reply.route, [b"Q%d" % i])
            self.assertEqual(reply.get_body()["orig_target"].split(":")[0], str(i))
        server.wait_stat("count.ok", n)
        self.assertNotIn("count.dropped.peer_full", server.stats_total())


class TestBoundedMemory(CCTestCase):
    # make test-long: the full 300,000; the quick suite proves the same bound with fewer
    MESSAGES = 300000 if os.environ.get("CC_TEST_LONG") else 60000

    def test_dead_remote_keeps_memory_bounded(self):
        server = self.start_server("mem", ccserver_section("mem") + ECHO_AND_DEAD_PROXY)
        pid = server.proc.pid
        start = rss_mb(pid)
        sock = self.dealer(server.endpoint)
        frames = CCMessage.build("log.info", {"log_msg": "x" * 320}).frames
        self.assertGreaterEqual(sum(map(len, frames)), 400)
        peak = start
        for i in range(self.MESSAGES):
            sock.send_multipart(frames)
            if i % 20000 == 0:
                peak = max(peak, rss_mb(pid))
        # every message is either held (2 x zmq_hwm: libzmq pipe + stream queue) or counted
        held = 2 * 100
        server.wait_stat("count.dropped.queue_full", self.MESSAGES - held, timeout=60)
        peak = max(peak, rss_mb(pid))
        self.assertLess(peak - start, 150, "RSS grew from %.1f to %.1f MB" % (start, peak))
        end = wait_for(lambda: rss_mb(pid) - start < 20 and rss_mb(pid), what="RSS back near start")
        self.assertLess(end - start, 20)
        if os.environ.get("CC_TEST_VERBOSE"):
            print("RSS start %.1f peak %.1f end %.1f MB" % (start, peak, end))
        # and the server still answers
        reply = self.query(sock, "echo.request", {"target": "after"})
        self.assertEqual(reply.get_body()["orig_target"], "after")


class TestStatsPerTypeBounded(CCTestCase):
    def test_a_flood_of_distinct_types_keeps_the_counters_bounded(self):
        from cc.server import MAX_STATS_TYPES

        ini = (
            ccserver_section("types", cc_stats="3")
            + "[routes]\ndrop = h:d\n[h:d]\nhandler = disposer\n"
        )
        server = self.start_server("types", ini)
        sock = self.dealer(server.endpoint)
        sent = MAX_STATS_TYPES + 500
        for n in range(sent):
            sock.send_multipart(CCMessage.build("drop.t%d" % n, {}).frames)
        server.wait_stat("count", sent)
        totals = server.stats_total()
        per_type = [k for k in totals if k.startswith("count.ok.msg.")]
        self.assertLessEqual(len(per_type), MAX_STATS_TYPES + 1)
        self.assertEqual(sum(totals[k] for k in per_type), sent)  # the rest under one key
        self.assertEqual(totals["count.ok.msg.(other)"], sent - len(per_type) + 1)


class TestLogBounded(CCTestCase):
    def test_a_flood_of_distinct_unrouted_types_does_not_flood_the_log(self):
        from cc.ratelog import RateLimitedLog

        server = self.start_server("flood", ccserver_section("flood") + ECHO_AND_DEAD_PROXY)
        sock = self.dealer(server.endpoint)
        sent = 3000
        for n in range(sent):
            sock.send_multipart(CCMessage.build("zz.t%d" % n, {}).frames)
        server.wait_stat("count.dropped", sent)
        lines = server.log_text().count("no route")
        self.assertGreater(lines, 0)
        self.assertLessEqual(lines, RateLimitedLog.MAX_RECORDS)
