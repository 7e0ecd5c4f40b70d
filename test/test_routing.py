"""RouteTable: dotted-prefix matching, order, sharing, caching."""

import unittest

from cc.routing import RouteError, RouteTable


class TestRouteTable(unittest.TestCase):
    def setUp(self):
        self.table = RouteTable()

    def test_prefix_matching(self):
        self.table.add("log", ["L"])
        self.table.add("pub.infofile", ["I"])
        self.assertEqual(self.table.lookup("log"), ("L",))
        self.assertEqual(self.table.lookup("log.info"), ("L",))
        self.assertEqual(self.table.lookup("pub.infofile.x"), ("I",))
        self.assertEqual(self.table.lookup("pub.infofilex"), ())
        self.assertEqual(self.table.lookup("pub"), ())
        self.assertEqual(self.table.lookup("logx"), ())

    def test_star_then_short_then_long_prefixes(self):
        self.table.add("a.b", ["AB"])
        self.table.add("*", ["ALL"])
        self.table.add("a", ["A1", "A2"])
        self.assertEqual(self.table.lookup("a.b.c"), ("ALL", "A1", "A2", "AB"))

    def test_each_handler_once(self):
        shared = object()
        self.table.add("*", [shared])
        self.table.add("log", [shared])
        self.assertEqual(self.table.lookup("log.info"), (shared,))

    def test_case_sensitive(self):
        self.table.add("Log", ["X"])
        self.assertEqual(self.table.lookup("Log.info"), ("X",))
        self.assertEqual(self.table.lookup("log.info"), ())

    def test_invalid_patterns(self):
        for bad in ("pub.*", "", "a..b", "log info"):
            with self.assertRaises(RouteError):
                self.table.add(bad, ["X"])

    def test_a_route_added_later_is_found(self):
        self.table.add("task", ["T"])
        self.assertEqual(self.table.lookup("task.send.1"), ("T",))
        self.table.add("task.send", ["S"])
        self.assertEqual(self.table.lookup("task.send.1"), ("T", "S"))


if __name__ == "__main__":
    unittest.main()
