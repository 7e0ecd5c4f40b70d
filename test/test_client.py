"""cc-send and the client APIs (CCClient, CCReqStream on an IOLoop) against a real server."""

import asyncio
import json
import sys

from harness import CCTestCase, ccserver_section
from tornado.ioloop import IOLoop

from cc.client import CCClient, QueryTimeout, parse_fields
from cc.message import CCMessage
from cc.reqstream import CCReqStream
from cc.stats import Stats

ROUTES = """
[routes]
echo = h:echo
log = h:log
db = h:slow

[h:echo]
handler = echo

[h:log]
handler = locallogger

[h:slow]
handler = delay
forward-to = h:echo
delay = 30
"""


class TestCCSend(CCTestCase):
    def setUp(self):
        super().setUp()
        self.server = self.start_server("s", ccserver_section("s") + ROUTES)

    def cc_send(self, *args):
        return self.run_command([sys.executable, "-m", "cc.client", *args])

    def test_query_prints_reply_exit_0(self):
        result = self.cc_send(self.server.endpoint, "echo.request", "target=x")
        self.assertEqual(result.returncode, 0, result.stderr)
        msgtype, body = result.stdout.split(" ", 1)
        self.assertEqual(msgtype, "echo.response")
        self.assertEqual(json.loads(body)["orig_target"], "x")

    def test_publish_exit_0(self):
        result = self.cc_send(
            self.server.endpoint,
            "log.info",
            "log_level=INFO",
            "log_msg=sent-by-cc-send",
            "job_name=cli",
            "log_time:=1.5",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "")
        self.server.wait_log(r"\[cli@\S+\] \S+ INFO sent-by-cc-send")

    def test_error_reply_exit_3(self):
        result = self.cc_send(self.server.endpoint, "nothing.here", "-w")
        self.assertEqual(result.returncode, 3)
        self.assertIn('"code": "no-route"', result.stdout)

    def test_timeout_exit_1(self):
        result = self.cc_send("-t", "0.5", self.server.endpoint, "db.x", "function=f")
        self.assertEqual(result.returncode, 1)
        self.assertIn("no reply", result.stderr)

    def test_usage_errors_exit_2(self):
        self.assertEqual(self.cc_send(self.server.endpoint, "bad type").returncode, 2)
        self.assertEqual(self.cc_send(self.server.endpoint, "x.y", "novalue").returncode, 2)
        self.assertEqual(self.cc_send(self.server.endpoint, "x.y", "a:=nojson").returncode, 2)

    def test_parse_fields(self):
        self.assertEqual(
            parse_fields(["a=1", "b:=1", 'c:=[1, "x"]', "d=x=y"]),
            {"a": "1", "b": 1, "c": [1, "x"], "d": "x=y"},
        )


class TestClientAPIs(CCTestCase):
    def setUp(self):
        super().setUp()
        self.server = self.start_server("s", ccserver_section("s") + ROUTES)

    def test_blocking_client(self):
        with CCClient(self.server.endpoint) as client:
            for i in range(3):
                reply = client.query("echo.request", {"target": "t%d" % i}, timeout=5)
                self.assertEqual(reply.get_body()["orig_target"], "t%d" % i)
            with self.assertRaises(QueryTimeout):
                client.query("db.x", {"function": "f"}, timeout=0.3)

    def test_req_stream_matches_replies_and_times_out(self):
        results = {}

        async def run():
            stream = CCReqStream(self.server.endpoint, IOLoop.current(), self.context, Stats())
            done = asyncio.Event()

            def collect(name):
                def callback(msg):
                    results[name] = msg and msg.get_body()
                    if len(results) == 11:
                        done.set()
                    return False

                return callback

            for i in range(10):
                msg = CCMessage.build("echo.request", {"target": "n%d" % i})
                stream.query(msg, collect("n%d" % i), timeout=5)
            stream.query(CCMessage.build("db.x", {"function": "f"}), collect("slow"), timeout=0.3)
            await asyncio.wait_for(done.wait(), 10)
            self.assertEqual(stream.pending, 0)
            stream.close()

        asyncio.run(run())
        for i in range(10):
            self.assertEqual(results["n%d" % i]["orig_target"], "n%d" % i)
        self.assertIsNone(results["slow"])
