"""cc.fanouts.FanOuts: one task to many hosts, their replies, timeouts and the summary.

The server view, the loop and the clock are stand-ins: timers fire when the test says.
"""

import json
import logging
import types
import unittest

from cc.fanouts import FanOuts, host_timeout
from cc.message import CCMessage
from cc.stats import Stats


class Loop:
    """call_later and remove_timeout, fired by hand."""

    def __init__(self):
        self.timers = []

    def call_later(self, delay, callback, *args):
        timer = [delay, callback, args]
        self.timers.append(timer)
        return timer

    def remove_timeout(self, timer):
        if timer in self.timers:  # as tornado's: a timer that fired is removed quietly
            self.timers.remove(timer)

    def fire(self):
        (_, callback, args), = self.timers  # exactly one pending  # fmt: skip
        self.timers.clear()
        callback(*args)


class FanOutsCase(unittest.TestCase):
    def setUp(self):
        self.now = 100.0
        self.loop = Loop()
        self.sent, self.relayed, self.audited = [], [], []
        view = types.SimpleNamespace(io_loop=self.loop, send=self.sent.append,
                                     relay=self.relayed.append)  # fmt: skip
        self.hosts = {h: types.SimpleNamespace(route=[b"r-" + h.encode()])
                      for h in ("db1", "db2", "web1")}  # fmt: skip
        self.stats = Stats()
        self.fanouts = FanOuts(view, self.hosts, self.stats, logging.getLogger("test.fanouts"),
                               self.audit, max_fanout=10, host_timeout=60, max_runs=100,
                               clock=lambda: self.now)  # fmt: skip

    def audit(self, event, signer, **fields):
        self.audited.append((event, fields.get("outcome")))

    def task(self, target, uid="u1", **fields):
        body = dict({"req": "task.send." + uid, "task_host": target,
                     "task_handler": "cc.task.sample", "task_id": 7}, **fields)  # fmt: skip
        frames = [b"client", b"Q1", b"", b"task.send." + uid.encode(),
                  json.dumps(body).encode(), b""]  # fmt: skip
        msg = CCMessage(frames)
        return msg, msg.get_body(), msg.type.split(".")

    def send(self, target, taken=(), **fields):
        self.fanouts.send(*self.task(target, **fields), taken=taken)

    def reply(self, host, status, uid="u1"):
        body = {"req": "task.reply." + uid, "status": status, "task_id": 7}
        msg = CCMessage([b"r-" + host.encode(), b"", b"task.reply." + uid.encode(),
                         json.dumps(body).encode(), b""])  # fmt: skip
        msg.get_body()
        self.assertTrue(self.fanouts.sent_to(uid, host))
        self.fanouts.reply(msg, uid, host)

    def bodies(self):
        return [(m.route, m.get_body()) for m in self.sent]


class TestFanOuts(FanOutsCase):
    def test_sent_as_signed_to_every_matching_host(self):
        self.send("db*")
        self.assertEqual(sorted(f[0] for f in self.relayed), [b"r-db1", b"r-db2"])
        self.assertTrue(all(f[1:3] == [b"", b"task.send.u1"] for f in self.relayed), "frames as they came")
        route, body = self.bodies()[0]
        self.assertEqual(route, [b"client", b"Q1"])
        self.assertEqual((body["status"], body["hosts"], body["unknown"]),
                         ("forwarded", ["db1", "db2"], []))  # fmt: skip
        self.assertIn("u1", self.fanouts)
        self.assertFalse(self.fanouts.sent_to("u1", "web1"))
        self.assertEqual(self.fanouts.pending("u1"), (["db1", "db2"], 7))

    def test_replies_tagged_then_one_summary(self):
        self.send(["db1", "db2", "gone"])
        self.reply("db1", "running")
        self.reply("db1", "finished")
        self.reply("db1", "finished")  # after its end: dropped
        self.reply("db2", "failed")
        bodies = [body for _, body in self.bodies()[1:]]
        self.assertEqual([(b.get("host"), b["status"]) for b in bodies],
                         [("db1", "running"), ("db1", "finished"), ("db2", "failed"),
                          (None, "summary")])  # fmt: skip
        summary = bodies[-1]
        self.assertEqual(summary["counts"], {"finished": 1, "failed": 1, "no-route": 1})
        self.assertEqual(self.stats.totals()["task.fanout_late"], 1)
        self.assertNotIn("u1", self.fanouts)
        self.assertEqual(self.loop.timers, [], "no timer left behind")
        self.assertEqual(self.audited, [("task.send", "forwarded"), ("task.end", "summary")])

    def test_silent_host_times_out(self):
        self.send("db*", host_timeout=5)
        self.reply("db1", "finished")
        self.assertEqual(self.loop.timers[0][0], 5)
        self.now += 5
        self.loop.fire()
        summary = self.bodies()[-1][1]
        self.assertEqual((summary["status"], summary["timeout"]), ("summary", ["db2"]))
        self.assertEqual(self.stats.totals()["task.fanout_timeout"], 1)

    def test_stop_sends_each_open_summary(self):
        self.send("db*")
        self.send("web*", uid="u2")
        self.fanouts.stop()
        summaries = [body for _, body in self.bodies() if body["status"] == "summary"]
        self.assertEqual(sorted(s["counts"]["timeout"] for s in summaries), [1, 2])
        self.assertEqual((len(self.fanouts), self.loop.timers), (0, []))


class TestRefused(FanOutsCase):
    def assertRefused(self, code, target="db*", taken=(), **fields):
        with self.assertLogs("test.fanouts", "WARNING"):
            self.send(target, taken=taken, **fields)
        self.assertEqual(self.bodies()[-1][1]["code"], code)
        self.assertEqual(self.relayed, [], "sent to no host")

    def test_uid_of_a_single_host_task(self):
        self.assertRefused("duplicate", taken={"u1"})

    def test_uid_already_fanned_out(self):
        self.send("db*")
        self.relayed.clear()
        self.assertRefused("duplicate")

    def test_more_hosts_than_the_task_allows(self):
        self.assertRefused("too-many-hosts", max_fanout=1)

    def test_bad_host_timeout(self):
        self.assertRefused("bad-task", host_timeout=10**400)

    def test_no_host_matches(self):
        self.assertRefused("no-route", target="mail*")


class TestHostTimeout(unittest.TestCase):
    def test_default_given_and_bounds(self):
        self.assertEqual(host_timeout(None, 60), 60)
        self.assertEqual(host_timeout("2.5", 60), 2.5)
        for bad in (0, -1, 86401, "x", 10**400):
            with self.assertRaises(ValueError):
                host_timeout(bad, 60)


if __name__ == "__main__":
    unittest.main()
