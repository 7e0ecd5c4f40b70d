"""Malformed input: counted, logged, answered where someone waits, never fatal, never acted on."""

import json
import random

from harness import CCTestCase, ccserver_section

from cc.message import CCMessage

ROUTES = """
[routes]
echo = h:echo
log = h:locallog

[h:echo]
handler = echo

[h:locallog]
handler = locallogger
"""


class TestMalformed(CCTestCase):
    def setUp(self):
        super().setUp()
        self.server = self.start_server(
            "m", ccserver_section("m", cc_max_message_size="4K") + ROUTES
        )
        self.sock = self.dealer(self.server.endpoint)

    def assert_still_serving(self):
        reply = self.query(self.sock, "echo.request", {"target": "alive"}, qid=b"QALIVE")
        self.assertEqual(reply.get_body()["orig_target"], "alive")

    def send_expect_error(self, frames, code):
        self.sock.send_multipart(frames)
        reply = CCMessage(self.recv(self.sock))
        self.assertEqual(reply.type, "error")
        self.assertEqual(reply.get_body()["code"], code)
        return reply

    def test_each_kind_is_counted_and_answered(self):
        # without a delimiter the route is unknown: counted, not answered
        self.sock.send_multipart([b"Q1", b"echo.request", b"{}"])
        cases = [
            ([b"Q1", b""], "bad-frames"),  # no type
            ([b"Q1", b"", b"echo.request"], "bad-frames"),  # no body
            ([b"Q1", b"", b"echo.request", b"{}", b"", b"", b"x"], "bad-frames"),  # odd frame count
            ([b"Q1", b"", b"echo request", b"{}"], "bad-type"),
            ([b"Q1", b"", b"x" * 300, b"{}"], "bad-type"),
            ([b"Q1", b"", b"echo.request", b"{not json"], "bad-body"),
            ([b"Q1", b"", b"echo.request", b"[1, 2]"], "bad-body"),
            ([b"Q1", b"", b"echo.request", b'{"req": "echo.response"}'], "hijacked"),
            # every frame within the limit (a larger one costs the connection), all together not
            ([b"Q1", b"", b"echo.request", b"{}", b"y" * 3000, b"x" * 3000], "oversize"),
        ]
        for frames, code in cases:
            reply = self.send_expect_error(frames, code)
            self.assertEqual(reply.route, [b"Q1"])
        self.assert_still_serving()
        self.server.wait_stat("count.invalid", len(cases) + 1)
        totals = self.server.stats_total()
        self.assertEqual(totals["count.invalid.bad-frames"], 4)
        self.assertEqual(totals["count.invalid.hijacked"], 1)
        self.assertEqual(totals["count.invalid.oversize"], 1)
        self.server.wait_log(r"Invalid CC message \(bad-frames\)")

    def test_hijacked_message_is_not_acted_on(self):
        body = {"req": "log.error", "log_level": "ERROR", "log_msg": "HIJACK", "job_name": "j"}
        self.sock.send_multipart([b"", b"log.info", json.dumps(body).encode()])
        self.server.wait_stat("count.invalid.hijacked", 1)
        self.assertNotIn("HIJACK", self.server.output())
        # fire-and-forget: no error reply for a log record
        self.assert_silent(self.sock)

    def test_fire_and_forget_garbage_gets_no_reply(self):
        self.sock.send_multipart([b"", b"log.info", b"{nope"])
        self.sock.send_multipart([b"garbage"])
        self.server.wait_stat("count.invalid", 2)
        self.assert_silent(self.sock)

    def test_random_frames_never_kill_the_server(self):
        rng = random.Random(1234)
        atoms = [
            b"",
            b"log.info",
            b"echo.request",
            b"{}",
            b'{"req": "log.info"}',
            b"\xff",
            b"Q1",
            b"a.b",
            b"[]",
            b"x" * 100,
        ]
        for _ in range(2000):
            frames = [
                rng.choice(atoms) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 40))
                for _ in range(rng.randint(1, 8))
            ]
            self.sock.send_multipart(frames)
        self.assert_still_serving_after_drain()
        self.server.wait_stat("count", 2001)

    def assert_still_serving_after_drain(self):
        # replies to the garbage arrive first; skip them until the echo answer
        self.sock.send_multipart(
            CCMessage.build("echo.request", {"target": "alive"}, route=[b"QALIVE"]).frames
        )
        for _ in range(5000):
            frames = self.recv(self.sock)
            if frames[0] == b"QALIVE":
                self.assertEqual(CCMessage(frames).type, "echo.response")
                return
        self.fail("no echo reply after garbage")
