"""cc.dispatch.Dispatcher: each result of routing a message, its counters and its answer."""

import json
import unittest

from cc.dispatch import MAX_PLANS, MAX_STATS_TYPES, OTHER_TYPES, Dispatcher
from cc.message import BodyGate, CCMessage, MessageError
from cc.routing import RouteTable
from cc.stats import Stats


class Stub:
    """A handler as the dispatcher sees it: a name, reads_body and handle_msg."""

    def __init__(self, name, reads=True, crash=False):
        self.hname = name
        self.reads = reads
        self.crash = crash
        self.got = []

    def reads_body(self, msgtype):
        return self.reads

    def handle_msg(self, msg):
        if self.crash:
            raise RuntimeError("stub crash")
        self.got.append(msg)


def frames(msgtype="echo.request", body=None, route=(b"peer", b"Q1"), raw_body=None):
    if raw_body is None:
        raw_body = json.dumps(body or {"req": msgtype, "time": 1.0, "hostname": "h"}).encode()
    return list(route) + [b"", msgtype.encode(), raw_body, b""]


class DispatcherCase(unittest.TestCase):
    def setUp(self):
        self.sent = []
        self.stats = Stats()
        self.dispatcher = Dispatcher(self.sent.append, self.stats)
        self.routes = RouteTable()
        self.dispatcher.configure(self.routes, BodyGate(), 4096, 2)

    def dispatch(self, *batch, logs=None):
        if logs is None:
            self.dispatcher.dispatch(list(batch))
            return None
        with self.assertLogs("cc.server", logs) as captured:
            self.dispatcher.dispatch(list(batch))
        return captured.output

    def answers(self):
        return [(m.route, m.get_body()["code"]) for m in self.sent]

    def totals(self):
        return self.stats.end_period()


class TestResults(DispatcherCase):
    def test_ok_every_handler_once_in_route_order(self):
        a, b = Stub("a"), Stub("b")
        self.routes.add("*", [a])
        self.routes.add("echo", [b, a])
        self.dispatch(frames())
        self.assertEqual([len(a.got), len(b.got)], [1, 1])
        self.assertEqual(a.got[0].get_body()["req"], "echo.request")
        totals = self.totals()
        self.assertEqual((totals["count.ok"], totals["count"]), (1, 1))
        self.assertEqual(totals["count.ok.msg.echo.request"], 1)
        self.assertEqual(self.sent, [])

    def test_crashed_handler_is_contained_and_answered(self):
        crasher, after = Stub("crasher", crash=True), Stub("after")
        self.routes.add("echo", [crasher, after])
        logs = self.dispatch(frames(), logs="ERROR")
        self.assertIn("crasher crashed", logs[0])
        self.assertEqual(len(after.got), 1, "the next handler still gets it")
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "crashed")])
        self.assertEqual(self.totals()["count.crashed"], 1)

    def test_stopping_when_every_handler_has_stopped(self):
        a = Stub("a")
        self.routes.add("echo", [a])
        self.dispatcher.stopped.add(a)
        self.dispatch(frames())
        self.assertEqual(a.got, [])
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "stopping")])
        self.assertEqual(self.totals()["count.stopping"], 1)

    def test_one_handler_stopped_of_two_is_still_ok(self):
        a, b = Stub("a"), Stub("b")
        self.routes.add("echo", [a, b])
        self.dispatcher.stopped.add(a)
        self.dispatch(frames())
        self.assertEqual((len(a.got), len(b.got)), (0, 1))
        self.assertEqual(self.totals()["count.ok"], 1)

    def test_no_route_dropped_warned_and_answered(self):
        logs = self.dispatch(frames("job.config"), logs="WARNING")
        self.assertIn("no route: job.config", logs[0])
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "no-route")])
        self.assertEqual(self.totals()["count.dropped"], 1)

    def test_no_route_quiet_for_reports_and_never_answered(self):
        with self.assertNoLogs("cc.server"):
            self.dispatch(frames("pub.stats", route=(b"peer",)))
        self.assertEqual(self.sent, [])
        self.assertEqual(self.totals()["count.dropped"], 1)

    def test_refused_body_answered_and_counted_invalid(self):
        a = Stub("a")
        self.routes.add("echo", [a])
        logs = self.dispatch(frames(raw_body=b"{not json"), logs="WARNING")
        self.assertIn("bad-body", logs[0])
        self.assertEqual(a.got, [], "a handler that reads bodies never sees a refused one")
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "bad-body")])
        totals = self.totals()
        self.assertEqual((totals["count.invalid.bad-body"], totals["count"]), (1, 1))
        self.assertNotIn("count.ok", totals)

    def test_refused_body_still_goes_to_handlers_that_pass_it_on_unread(self):
        reader, proxy = Stub("reader"), Stub("proxy", reads=False)
        self.routes.add("echo", [reader, proxy])
        self.dispatch(frames(raw_body=b"{not json"), logs="WARNING")
        self.assertEqual((len(reader.got), len(proxy.got)), (0, 1))
        with self.assertRaises(MessageError) as caught:
            proxy.got[0].get_body()
        self.assertEqual(caught.exception.code, "bad-body")

    def test_refused_acknowledgeable_message_answered_with_a_query_id(self):
        """doc/protocol.md §5.3: an infosender waiting for its ack hears why it will not come."""
        writer = Stub("infowriter")
        self.routes.add("pub", [writer])
        bad = b'{"req": "pub.infofile", "ack": true'
        logs = self.dispatch(frames("pub.infofile", raw_body=bad),
                             frames("pub.infofile", raw_body=bad, route=(b"peer",)),
                             frames("pub.stats", raw_body=bad), logs="WARNING")  # fmt: skip
        self.assertEqual(len(logs), 1, "rate-limited: one line for the three")
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "bad-body")])
        self.assertEqual(self.totals()["count.invalid.bad-body"], 3)

    def test_unread_when_no_handler_reads_the_body(self):
        proxy = Stub("proxy", reads=False)
        self.routes.add("echo", [proxy])
        self.dispatch(frames())
        with self.assertRaises(MessageError) as caught:
            proxy.got[0].get_body()
        self.assertEqual(caught.exception.code, "unread")
        self.assertEqual(self.totals()["count.ok"], 1)

    def test_oversize_refused_before_parsing(self):
        a = Stub("a")
        self.routes.add("echo", [a])
        logs = self.dispatch(frames(body={"pad": "x" * 5000}), logs="WARNING")
        self.assertIn("oversize", logs[0])
        self.assertEqual(a.got, [])
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "oversize")])
        self.assertEqual(self.totals()["count.invalid.oversize"], 1)

    def test_bad_frames_answered_only_with_a_query_id(self):
        self.dispatch([b"peer", b"Q1", b"", b"echo"], [b"peer", b"", b"echo"], logs="WARNING")
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "bad-frames")])
        self.assertEqual(self.totals()["count.invalid.bad-frames"], 2)

    def test_one_bad_message_costs_the_others_nothing(self):
        a = Stub("a")
        self.routes.add("echo", [a])
        self.dispatch(frames(), [b"peer"], frames(), logs="WARNING")
        self.assertEqual(len(a.got), 2)


class TestTallies(DispatcherCase):
    def test_types_beyond_the_bound_share_one_key(self):
        for n in range(MAX_STATS_TYPES + 5):
            self.dispatcher.count("dropped", "t.x%d" % n, 10, 0.0)
        totals = self.totals()
        self.assertEqual(totals["count.dropped.msg." + OTHER_TYPES], 5)
        self.assertEqual(totals["count.dropped"], MAX_STATS_TYPES + 5)
        self.assertEqual(totals["bytes"], 10 * (MAX_STATS_TYPES + 5))

    def test_stats_level_one_counts_no_types(self):
        self.dispatcher.stats_level = 1
        self.dispatch(frames("job.config"), logs="WARNING")
        self.assertFalse([k for k in self.totals() if ".msg." in k])


class TestPlans(DispatcherCase):
    def test_plans_are_bounded_and_follow_a_new_route_table(self):
        handler = Stub("h:t")
        self.routes.add("task", [handler])
        for i in range(MAX_PLANS + 10):
            self.dispatcher.plan("task.send.%d" % i)
        self.assertLessEqual(len(self.dispatcher._plans), MAX_PLANS)
        other = Stub("h:s", reads=False)
        routes = RouteTable()
        routes.add("task.send", [other])
        self.dispatcher.configure(routes, BodyGate(), 4096, 2)
        self.assertEqual(self.dispatcher.plan("task.send.1"), ((other,), False))


class TestForward(DispatcherCase):
    def msg(self):
        msg = CCMessage(frames())
        msg.get_body()
        return msg

    def test_forward_ok(self):
        target = Stub("target")
        self.assertEqual(self.dispatcher.forward(target, self.msg()), "ok")
        self.assertEqual(len(target.got), 1)

    def test_forward_to_a_crashing_target_is_contained_and_answered(self):
        with self.assertLogs("cc.server", "ERROR"):
            result = self.dispatcher.forward(Stub("target", crash=True), self.msg())
        self.assertEqual(result, "crashed")
        self.assertEqual(self.answers(), [([b"peer", b"Q1"], "crashed")])

    def test_forward_to_a_stopped_target_delivers_nothing(self):
        target = Stub("target")
        self.dispatcher.stopped.add(target)
        self.assertEqual(self.dispatcher.forward(target, self.msg()), "stopping")
        self.assertEqual(target.got, [])


class TestPublish(unittest.TestCase):
    def test_names_ignores_the_catch_all(self):
        table = RouteTable()
        table.add("*", ["all"])
        table.add("pub.state", ["state"])
        self.assertTrue(table.names("pub.state"))
        self.assertTrue(table.names("pub.state.x"))
        self.assertFalse(table.names("pub.stats"))
        self.assertFalse(table.names("pub.statex"))


if __name__ == "__main__":
    unittest.main()
