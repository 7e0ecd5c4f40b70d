"""proxy: forwarding across hops, replies back along the route, link pings, bounded queue."""

import time

from harness import CCTestCase, ccserver_section

from cc.message import CCMessage
from cc.stream import frames_cost

REMOTE_ROUTES = """
[routes]
log = h:locallog
echo = h:echo

[h:locallog]
handler = locallogger

[h:echo]
handler = echo
"""
REMOTE = ccserver_section("remote") + REMOTE_ROUTES

LOCAL = ccserver_section("local", role="local") + """
[routes]
log = h:proxy
echo = h:proxy

[h:proxy]
handler = proxy
remote-cc = {remote}
"""

HOP = """
[routes]
echo = h:proxy

[h:proxy]
handler = proxy
remote-cc = {remote}
"""


def log_fields(text):
    return {
        "log_level": "INFO",
        "service_type": "test",
        "job_name": "job",
        "log_msg": text,
        "log_time": time.time(),
        "log_pid": 1,
        "log_line": 1,
        "log_function": "f",
    }


class TestProxy(CCTestCase):
    def test_log_reaches_remote_locallogger(self):
        remote = self.start_server("remote", REMOTE)
        local = self.start_server("local", LOCAL, remote=remote.endpoint)
        sock = self.dealer(local.endpoint)
        sock.send_multipart(CCMessage.build("log.info", log_fields("Foo")).frames)
        remote.wait_log(r"\[job@\S+\] \S+ INFO Foo")
        local.wait_stat("count.ok", 1)

    def test_no_route_logged_and_counted(self):
        remote = self.start_server("remote", REMOTE)
        sock = self.dealer(remote.endpoint)
        sock.send_multipart(CCMessage.build("pub.infofile", {"filename": "x"}).frames)
        remote.wait_log(r"no route: pub\.infofile")
        remote.wait_stat("count.dropped", 1)

    def test_echo_one_hop_keeps_route(self):
        remote = self.start_server("remote", REMOTE)
        local = self.start_server("local", LOCAL, remote=remote.endpoint)
        sock = self.dealer(local.endpoint)
        reply = self.query(sock, "echo.request", {"target": "t1"}, qid=b"Q000001")
        self.assertEqual(reply.type, "echo.response")
        body = reply.get_body()
        self.assertEqual(body["orig_target"], "t1")

    def chain(self, hops):
        """A client -> hop 1 -> ... -> hop n -> remote with echo; returns the first hop."""
        upstream = self.start_server("remote", REMOTE)
        for n in range(hops, 0, -1):
            name = "hop%d" % n
            upstream = self.start_server(
                name, ccserver_section(name) + HOP, remote=upstream.endpoint
            )
        return upstream

    def test_echo_two_hops(self):
        first = self.chain(2)
        sock = self.dealer(first.endpoint)
        for i in range(5):
            qid = b"Q%06d" % i
            reply = self.query(sock, "echo.request", {"target": "x%d" % i}, qid=qid)
            self.assertEqual(reply.get_body()["orig_target"], "x%d" % i)

    def test_echo_three_hops_several_clients(self):
        first = self.chain(3)
        clients = [self.dealer(first.endpoint) for _ in range(3)]
        for n, sock in enumerate(clients):
            sock.send_multipart(
                CCMessage.build("echo.request", {"target": "c%d" % n}, route=[b"Q%d" % n]).frames
            )
        for n, sock in enumerate(clients):
            reply = CCMessage(self.recv(sock))
            self.assertEqual(reply.route, [b"Q%d" % n])
            self.assertEqual(reply.get_body()["orig_target"], "c%d" % n)

    def test_ping_reports_link_down_and_up(self):
        remote = self.start_server("remote", REMOTE)
        local = self.start_server(
            "local",
            LOCAL.replace(
                "remote-cc = {remote}", "remote-cc = {remote}\nping = yes\n" "ping-period = 0.1"
            ),
            remote=remote.endpoint,
        )
        local.wait_stat("ping.received", 3)
        remote.stop()
        local.wait_log(r"no pong from tcp://127\.0\.0\.1:\d+ for \d+ s")
        # the same address again: the proxy reconnects by itself
        self.start_server(
            "remote2", ccserver_section("remote2", socket=remote.endpoint) + REMOTE_ROUTES
        )
        local.wait_log(r"pong from tcp://127\.0\.0\.1:\d+ again, link is up")
        self.assertNotIn("unknown msg", local.output())

    def test_queue_bounded_while_remote_down(self):
        # a remote that is not there: messages wait in the bounded queue, the rest are counted
        dead = "tcp://127.0.0.1:9"
        messages = [CCMessage.build("log.info", log_fields("m%d" % i)) for i in range(200)]
        # as the proxy queues them: behind the 5-byte identity the ROUTER gave the client
        cost = max(frames_cost([b"\0abcd"] + msg.frames) for msg in messages)
        local = self.start_server(
            "local",
            LOCAL.replace(
                "remote-cc = {remote}",
                "remote-cc = {remote}\nzmq_hwm = 10\nqueue-bytes = %d" % (10 * cost),
            ),
            remote=dead,
        )
        sock = self.dealer(local.endpoint)
        for msg in messages:
            sock.send_multipart(msg.frames)
        dropped = local.wait_stat("count.dropped.queue_full", 1)
        local.wait_stat("count", 200)
        # held: zmq_hwm in libzmq's pipe to the (pending) connection + 10 in the stream's bytes
        self.assertEqual(dropped, 200 - 2 * 10)
