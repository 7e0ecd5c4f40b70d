"""cc.handlerset: RoutePlan's config errors, HandlerSet's apply, rollback and stop order."""

import os
import tempfile
import textwrap
import types
import unittest

import skytools

from cc.handler import HandlerConfigError
from cc.handlerset import HandlerSet, RoutePlan
from cc.routing import RouteError
from cc.stats import Stats

RECORDER = "plugins.recorder"


class HandlerSetCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        # all that a handler's __init__ takes from the server view
        self.view = types.SimpleNamespace(io_loop=None, zctx=None, stats=Stats())
        self.handlers = HandlerSet(self.view)
        self.view.get_handler = self.handlers.get

    def plan(self, ini, role="insecure"):
        path = os.path.join(self.tmp.name, "cc.ini")
        with open(path, "w") as f:
            f.write("[ccserver]\ncc-socket = tcp://127.0.0.1:1\n" + textwrap.dedent(ini))
        cf = skytools.Config("ccserver", path)
        return RoutePlan(cf, role, {"job_name": "test"})


class TestRoutePlanErrors(HandlerSetCase):
    def assertRefused(self, ini, text, role="insecure", error=HandlerConfigError):
        with self.assertRaises(error) as caught:
            self.plan(ini, role)
        self.assertIn(text, str(caught.exception))

    def test_no_routes_section(self):
        self.assertRefused("", "no section 'routes'")

    def test_route_naming_no_handler(self):
        self.assertRefused("[routes]\necho = ,\n", "names no handler")

    def test_missing_section(self):
        self.assertRefused("[routes]\necho = h:gone\n", "no section [h:gone]")

    def test_section_without_handler(self):
        self.assertRefused("[routes]\necho = h:x\n[h:x]\ntag = 1\n", "needs 'handler ='")

    def test_unknown_handler(self):
        self.assertRefused("[routes]\necho = h:x\n[h:x]\nhandler = nosuch\n", "cannot load")

    def test_handler_outside_its_role(self):
        ini = "[routes]\necho = h:x\n[h:x]\nhandler = echo\n"
        self.plan(ini, "local")  # echo runs everywhere: the check itself passes
        self.assertRefused("[routes]\nx = h:x\n[h:x]\nhandler = plugins.remoteonly\n",
                           "cannot be run in role local", role="local")  # fmt: skip

    def test_forwarding_loop(self):
        ini = """\
            [routes]
            echo = h:a
            [h:a]
            handler = plugins.recorder
            forward-to = h:b
            [h:b]
            handler = plugins.recorder
            forward-to = h:a
            """
        self.assertRefused(ini, "forwarding loop h:a -> h:b -> h:a")

    def test_pattern_no_type_could_match(self):
        self.assertRefused("[routes]\nbad..x = h:a\n[h:a]\nhandler = echo\n", "invalid route",
                           error=RouteError)  # fmt: skip


INI = """\
    [routes]
    echo = h:a
    log = h:b, h:a
    [h:a]
    handler = plugins.recorder
    [h:b]
    handler = plugins.recorder
    reads-body = {b_reads}
    """


class TestApply(HandlerSetCase):
    def test_one_instance_per_section_in_route_order(self):
        routes, retired = self.handlers.apply(self.plan(INI.format(b_reads="yes")))
        self.assertEqual(retired, [])
        a, b = self.handlers.get("h:a"), self.handlers.get("h:b")
        self.assertEqual(routes.lookup("echo.request"), (a,))
        self.assertEqual(routes.lookup("log.info"), (b, a))

    def test_reload_keeps_unchanged_replaces_changed(self):
        self.handlers.apply(self.plan(INI.format(b_reads="yes")))
        a, b = self.handlers.get("h:a"), self.handlers.get("h:b")
        routes, retired = self.handlers.apply(self.plan(INI.format(b_reads="no")))
        self.assertIs(self.handlers.get("h:a"), a)
        self.assertIsNot(self.handlers.get("h:b"), b)
        self.assertEqual(retired, [b])
        self.assertEqual(routes.lookup("log.info"), (self.handlers.get("h:b"), a))

    def test_failed_apply_rolls_back(self):
        self.handlers.apply(self.plan(INI.format(b_reads="yes")))
        before = dict(self.handlers.instances)
        # h:b changes (a new instance is made first), then h:c fails to be made
        ini = INI.format(b_reads="no").rstrip(" ").replace("log = h:b, h:a", "log = h:b, h:a\n    x = h:c")
        plan = self.plan(ini + "    [h:c]\n    handler = plugins.recorder\n    fail-init = yes\n")
        with self.assertRaises(ValueError):
            self.handlers.apply(plan)
        self.assertEqual(self.handlers.instances, before, "the running set is as it was")
        self.assertFalse(before["h:b"][1].stopped, "the running h:b was not touched")


class TestStopStages(HandlerSetCase):
    def test_what_forwards_stops_before_its_target(self):
        ini = """\
            [routes]
            a = h:proxy
            b = h:delay
            c = h:other
            [h:proxy]
            handler = plugins.recorder
            [h:delay]
            handler = plugins.recorder
            forward-to = h:filter
            [h:filter]
            handler = plugins.recorder
            forward-to = h:proxy
            [h:other]
            handler = plugins.recorder
            """
        self.handlers.apply(self.plan(ini))
        stages = [sorted(h.hname for h in stage) for stage in self.handlers.stop_stages()]
        self.assertEqual(stages, [["h:delay", "h:other"], ["h:filter"], ["h:proxy"]])

    def test_without_forwarding_one_stage(self):
        self.handlers.apply(self.plan(INI.format(b_reads="yes")))
        self.assertEqual(len(self.handlers.stop_stages()), 1)


if __name__ == "__main__":
    unittest.main()
