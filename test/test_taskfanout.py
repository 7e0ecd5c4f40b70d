"""cc.taskfanout: which hosts a target names, and the bookkeeping of one task on many hosts."""

import unittest

from cc.taskfanout import FanOut, TargetError, check_fanout, check_pattern, is_fanout, select_hosts

HOSTS = ["db-1", "db-2", "db-10", "web-1"]


class TestTargets(unittest.TestCase):
    def test_what_is_a_fanout(self):
        self.assertTrue(is_fanout("db-*"))
        self.assertTrue(is_fanout("db-[12]"))
        self.assertTrue(is_fanout(["db-1"]))
        self.assertFalse(is_fanout("db-1"))
        self.assertFalse(is_fanout(5))

    def test_patterns_and_lists_select_registered_hosts(self):
        self.assertEqual(select_hosts("db-*", HOSTS, 100), (["db-1", "db-10", "db-2"], []))
        self.assertEqual(select_hosts("db-?", HOSTS, 100), (["db-1", "db-2"], []))
        self.assertEqual(select_hosts("db-[!1]", HOSTS, 100), (["db-2"], []))
        listed = ["web-1", "db-1", "db-1"]
        self.assertEqual(select_hosts(listed, HOSTS, 100), (["db-1", "web-1"], []))
        self.assertEqual(select_hosts(["web-*", "db-9"], HOSTS, 100), (["web-1"], ["db-9"]))

    def test_bad_targets(self):
        for target, text in [
            ("db-[", "'[' without ']'"),
            ("db-]*", "']' without '['"),
            ("db-[]*", "empty [...]"),
            ("db-[!]*", "empty [...]"),
            ("db-[[1]]", "'[' inside [...]"),
            ("db/*", "use letters"),
            ("", "use letters"),
            ("x" * 256, "use letters"),
            ([], "non-empty list"),
            (["db-1", None], "non-empty list"),
            ({"a": 1}, "non-empty list"),
        ]:
            with self.assertRaises(TargetError, msg=repr(target)) as caught:
                select_hosts(target, HOSTS, 100)
            self.assertEqual(caught.exception.code, "bad-target")
            self.assertIn(text, caught.exception.msg)
        with self.assertRaises(TargetError) as caught:
            select_hosts("mail-*", HOSTS, 100)
        self.assertEqual(caught.exception.code, "no-route")
        check_pattern("db-[a-c]?.example.net")  # a valid one passes
        with self.assertRaises(TargetError) as caught:
            select_hosts(["db-%d" % n for n in range(101)], HOSTS, 100)
        self.assertEqual(caught.exception.code, "too-many-hosts")
        self.assertIn("lists 101 names, more than max-fanout 100", caught.exception.msg)
        with self.assertRaises(TargetError) as caught:
            select_hosts(["db-%d*" % n for n in range(17)], HOSTS, 100)
        self.assertIn("more than 16 patterns", caught.exception.msg)

    def test_check_fanout(self):
        body = {"task_handler": "cc.task.sample"}
        self.assertEqual(check_fanout(body, ["task", "send", "t1"], 1000), ("t1", 1000))
        bounded = dict(body, max_fanout=5)
        self.assertEqual(check_fanout(bounded, ["task", "send", "t1"], 9), ("t1", 5))
        for bad_body, parts in [
            (body, ["task", "send"]),
            (body, ["task", "send", "x" * 129]),
            ({}, ["task", "send", "t1"]),
            (dict(body, max_fanout=0), ["task", "send", "t1"]),
            (dict(body, max_fanout=True), ["task", "send", "t1"]),
            (dict(body, max_fanout="5"), ["task", "send", "t1"]),
        ]:
            with self.assertRaises(TargetError):
                check_fanout(bad_body, parts, 1000)


class TestFanOut(unittest.TestCase):
    def test_final_status_once_silent_hosts_time_out_summary(self):
        fan = FanOut("t1", 42, ["a", "b", "c"], ["d"], host_timeout=10, now=100)
        self.assertTrue(fan.take("a", "starting", 101))
        self.assertTrue(fan.take("a", "finished", 102))
        self.assertFalse(fan.take("a", "finished", 103))  # a repeated final is not relayed
        self.assertTrue(fan.take("b", "running", 105))
        self.assertEqual(fan.next_deadline(), 110)  # c, silent since the start
        self.assertEqual(fan.expire(109.9), [])
        self.assertEqual(fan.expire(110), ["c"])
        self.assertEqual(fan.next_deadline(), 115)  # b's heartbeat keeps it waited for
        self.assertTrue(fan.take("b", "failed", 112))
        self.assertIsNone(fan.next_deadline())
        self.assertFalse(fan.take("c", "finished", 113))  # too late: it counts as timed out
        summary = fan.summary()
        counts = {"finished": 1, "failed": 1, "timeout": 1, "no-route": 1}
        self.assertEqual(summary["counts"], counts)
        self.assertEqual(summary["timeout"], ["c"])
        self.assertEqual(summary["not_ok"], {"b": "failed", "c": "timeout", "d": "no-route"})
        self.assertEqual(summary["status"], "summary")
        self.assertEqual((summary["task_id"], summary["hosts"]), (42, 4))
