"""Handlers see the server only through ServerView; what they register shows on the pages.

Every registered handler runs on one real server here, and the handler modules
are read for what they touch of the view: nothing else of the server reaches
them (they are handed the view and nothing else), and the view offers nothing
that no handler or page uses.
"""

import ast
import importlib
import json
import signal

from harness import LOCAL_HTTP, CCTestCase, ccserver_section, wait_for

from cc.handler import HANDLERS
from cc.handler.serverview import ServerView
from cc.message import HOSTNAME
from cc.msgtypes import StatsMessage, TaskRegisterMessage

#: a working section for every registered handler; a new handler needs one here
SECTIONS = {
    "dbhandler": "db = dbname=nowhere host={tmp}/no-postgres\nallowed-functions = public.f",
    "delay": "forward-to = h:disposer\ndelay = 0.1",
    "disposer": "",
    "echo": "",
    "filter": "forward-to = h:disposer\ninclude = t.filter.*",
    "infowriter": "dstdir = {tmp}/info",
    "jobmgr": "daemons = d:echo",
    "locallogger": "",
    "logwriter": "dstdir = {tmp}/logs",
    "proxy": "remote-cc = {remote}",
    "statswriter": "dstdir = {tmp}/stats\nmax-entries = {max_entries}",
    "tailwriter": "dstdir = {tmp}/tails",
    "taskrouter": "",
}

#: types that reach the handlers that need them; the rest get a route of their own
ROUTES = {
    "statswriter": ["pub.stats", "pub.state"],
    "echo": ["echo"],
    "jobmgr": ["job"],
    "taskrouter": ["task"],
    "locallogger": ["log"],
}


def every_handler_ini():
    """No cc-role (insecure: every handler may run), with statswriter's routes first and
    proxy's last, so that a proxy failing on reload comes after statswriter was made."""
    names = sorted(HANDLERS, key=lambda n: (n == "proxy", n != "statswriter", n))
    routes = ["%s = h:%s" % (p, n) for n in names for p in ROUTES.get(n, ["t." + n])]
    sections = ["[h:%s]\nhandler = %s\n%s\n" % (n, n, SECTIONS[n]) for n in names]
    daemon = "[d:echo]\nmodule = plugins.echodaemon\necho-timeout = 1\nstats-period = 0.2\n"
    text = ccserver_section("all", role=None, metrics_http="127.0.0.1:0")
    return text + "[routes]\n" + "\n".join(routes) + "\n\n" + "\n".join(sections) + daemon


def view_uses(path):
    """The names used on the view in a module (``self.server.X``, ``server.X``, ``view.X``),
    and the names that must not appear at all (the server's insides)."""
    with open(path, encoding="utf8") as f:
        tree = ast.parse(f.read(), path)
    used, forbidden = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if isinstance(owner, ast.Attribute) and owner.attr in ("server", "view"):
                used.add(node.attr)
            elif isinstance(owner, ast.Name) and owner.id == "server":
                used.add(node.attr)
            if node.attr in ("_server", "cclocal"):
                forbidden.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and node.module == "cc.server":
            forbidden.add("import cc.server")
        elif isinstance(node, ast.Name) and node.id == "ccscript":
            forbidden.add("ccscript")
    return used, forbidden


class TestServerView(CCTestCase):
    def test_every_handler_touches_the_view_only_and_the_view_nothing_unused(self):
        interface = {name for name in vars(ServerView) if not name.startswith("_")}
        modules = ["cc.handler"] + sorted(set(HANDLERS.values()))
        used_by_handlers = set()
        for modname in modules:
            path = importlib.import_module(modname).__file__
            used, forbidden = view_uses(path)
            self.assertEqual(forbidden, set(), "%s reaches into the server" % modname)
            self.assertLessEqual(used, interface, "%s uses more than the view" % modname)
            used_by_handlers |= used
        used_by_pages, _ = view_uses(importlib.import_module("cc.metrics").__file__)
        self.assertEqual(interface - used_by_handlers - used_by_pages, set(), "unused in the view")

    def fetch(self, path):
        with LOCAL_HTTP.open(self.base + path, timeout=5) as response:
            return json.loads(response.read().decode("utf8"))

    def jobs_on_status(self):
        return set(self.fetch("/status")["hosts"].get(HOSTNAME, {}))

    def write_config(self, server, remote, max_entries):
        text = every_handler_ini().replace("{tmp}", self.tmp)
        server.write_ini(
            text.replace("{remote}", remote).replace("{max_entries}", str(max_entries))
        )

    def reload(self, server, outcome):
        before = len(server.output())
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: outcome in server.output()[before:], what=outcome)

    def test_every_handler_runs_on_a_real_server_and_its_stores_follow_reloads(self):
        remote = "ipc://%s/nobody" % self.tmp
        ini = every_handler_ini().replace("{remote}", remote).replace("{max_entries}", "100")
        server = self.write_server("all", ini).start()
        self.base = "http://" + server.wait_log(r"metrics on http://(\S+)/metrics").group(1)
        state = wait_for(lambda: self.fetch("/status")["state"], what="/status")
        self.assertEqual(sorted(state["handlers"]), sorted("h:" + name for name in HANDLERS), state)

        # replies go out through the view
        sock = self.dealer(server.endpoint)
        self.assertEqual(self.query(sock, "echo.request", {"target": "v"}).type, "echo.response")

        # statswriter's store (the server's own reports, a job's) and taskrouter's hosts
        report = StatsMessage(job_name="old-job", service_type="t", counters={}, period=60)
        sock.send_multipart(report.to_message().frames)
        wait_for(lambda: {"all", "old-job"} <= self.jobs_on_status(), what="stores on /status")
        sock.send_multipart(TaskRegisterMessage(host="db-view").to_message().frames)
        wait_for(
            lambda: "db-view" in {row["host"] for row in self.fetch("/fleet.json")["hosts"]},
            what="taskrouter's host on /fleet.json",
        )

        # a reload that fails after making a new statswriter leaves the running one's store
        self.write_config(server, "nonsense://nowhere", 200)
        self.reload(server, "reload failed")
        self.assertIn("old-job", self.jobs_on_status())

        # a reload that replaces statswriter shows the new store only
        self.write_config(server, remote, 300)
        self.reload(server, "reloaded: ")
        wait_for(
            lambda: "all" in self.jobs_on_status() and "old-job" not in self.jobs_on_status(),
            what="the new statswriter's reports, none of the old one's",
        )
        self.assertEqual(server.stop(), 0)
