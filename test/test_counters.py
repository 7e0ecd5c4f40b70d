"""The counter catalog: every counter the code keeps has a row, every family a HELP."""

import ast
import os
import re
import unittest

from cc import counters

CC_DIR = os.path.join(os.path.dirname(__file__), "..", "cc")
#: a part of a counter name the call site computes
VARIES = "\0"


def _name_of(node):
    """The counter name ``node`` builds, with :data:`VARIES` for computed parts."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _name_of(node.left) + _name_of(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return re.sub(r"%[sd]", VARIES, _name_of(node.left))
    if isinstance(node, ast.Attribute) and node.attr == "prefix":
        return VARIES + "."  # dbhandler's ``hname + "."``
    return VARIES


def counted_names():
    """(file:line, name) of every ``<...>stats.inc(name, ...)`` in ``cc/``."""
    found = []
    for root, _dirs, files in os.walk(CC_DIR):
        for filename in files:
            if not filename.endswith(".py"):
                continue
            path = os.path.join(root, filename)
            with open(path, encoding="utf8") as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "inc"
                    and ast.unparse(node.func.value).endswith("stats")
                    and node.args
                ):
                    where = "%s:%d" % (os.path.relpath(path, CC_DIR), node.lineno)
                    found.append((where, _name_of(node.args[0])))
    return found


def declared(name):
    """Whether a row knows ``name``; a computed part may be any value a row declares."""
    if VARIES not in name:
        return counters.lookup(name) is not None
    shape = re.compile(re.escape(name).replace(re.escape(VARIES), "[^.]+"))
    for row in counters.COUNTERS:
        example = re.sub(r"<[a-z]+\*?>", "x", row.name)
        if shape.fullmatch(example):
            return True
    return False


class TestCatalog(unittest.TestCase):
    def test_every_counter_the_code_keeps_is_declared(self):
        names = counted_names()
        self.assertGreater(len(names), 100)  # the scan sees the call sites
        missing = ["%s: %s" % (where, name.replace(VARIES, "<?>")) for where, name in names
                   if not declared(name)]
        self.assertEqual(missing, [], "counters the catalog (cc/counters.py) does not know")

    def test_a_counter_nobody_declared_is_caught(self):
        self.assertFalse(declared("count.surprise"))
        self.assertFalse(declared("jobs." + VARIES + ".surprise"))
        self.assertTrue(declared("count.dropped." + VARIES))

    def test_rows_are_well_formed(self):
        names = [row.name for row in counters.COUNTERS]
        self.assertEqual(sorted(set(names)), sorted(names), "a name declared twice")
        for family, (text, rows) in counters.families().items():
            self.assertRegex(family, r"^cc_[a-z_]+_total$")
            self.assertTrue(text)
            if len(rows) > 1:
                self.assertIn(family, counters.FAMILY_HELP, "rows share %s" % family)
            label_sets = {
                tuple(sorted(dict(row.labels))
                      + re.findall(r"<([a-z]+)\*?>", row.name)) for row in rows
            }
            self.assertLessEqual(len({len(s) for s in label_sets}), 2, family)
        for family in counters.FAMILY_HELP:
            self.assertIn(family, counters.families(), "HELP of no family")

    def test_variable_parts_become_labels(self):
        self.assertEqual(
            counters.lookup("count.dropped.peer_full")[1], (("reason", "peer_full"),)
        )
        row, labels = counters.lookup("count.dropped")
        self.assertEqual((row.family, labels), ("cc_messages_dropped_total",
                                                (("reason", "no_route"),)))
        row, labels = counters.lookup("count.ok.msg.pub.stats")
        self.assertEqual(dict(labels), {"result": "ok", "type": "pub.stats"})
        row, labels = counters.lookup("h:db.errors.sql-error")
        self.assertEqual(dict(labels), {"handler": "h:db", "code": "sql-error"})
        self.assertIsNone(counters.lookup("count.invalid")[0].family)
        self.assertIsNone(counters.lookup("no.such.counter"))

    def test_routine_cleanups_are_not_drops(self):
        self.assertEqual(counters.lookup("dropped_tasks")[0].kind, counters.Kind.CLEANUP)
        self.assertEqual(counters.lookup("filter.count.dropped")[0].kind, counters.Kind.OUTCOME)
        self.assertEqual(counters.lookup("count.dropped.queue_full")[0].kind, counters.Kind.DROP)


if __name__ == "__main__":
    unittest.main()
