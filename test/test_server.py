"""cc-server as an operator runs it: command line, signals, reload, roles, stats, config errors."""

import os
import re
import signal
import sys

from harness import CCTestCase, ccserver_section, pid_alive, read_file, wait_for

from cc.message import CCMessage

ECHO = """
[routes]
echo = h:echo

[h:echo]
handler = echo
"""

TAGGED = """
[routes]
echo = h:echo
a = h:a
b = h:b

[h:echo]
handler = echo

[h:a]
handler = plugins.tagger
tag = {tag_a}

[h:b]
handler = plugins.tagger
tag = one
"""


class TestCommandLine(CCTestCase):
    def cc_server(self, *args):
        return self.run_command([sys.executable, "-m", "cc.server", *args])

    def test_ini_template_lists_every_option(self):
        out = self.cc_server("--ini").stdout
        sources = []
        for name in ("server.py", "sockopts.py"):
            with open(os.path.join(os.path.dirname(__file__), "..", "cc", name)) as f:
                sources.append(f.read())
        options = set(re.findall(r'cf\.get\w*\("([a-z_-]+)"', "\n".join(sources)))
        options |= set(re.findall(r'\("(zmq_[a-z_]+)", \d+', "\n".join(sources)))
        options |= {"logfile", "pidfile"}
        self.assertGreater(len(options), 15)
        for option in sorted(options):
            self.assertRegex(out, r"(?m)^#?%s = " % re.escape(option))
        self.assertIn("[ccserver]", out)
        self.assertIn("[routes]", out)

    def test_version(self):
        out = self.cc_server("-V").stdout
        self.assertRegex(out, r"^cc-server version \d+\.\d+")

    def test_missing_config_file(self):
        result = self.cc_server(os.path.join(self.tmp, "nope.ini"))
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("not found", result.stdout + result.stderr)


class TestLifecycle(CCTestCase):
    def test_sigint_and_sigterm_stop_gracefully(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            server = self.start_server("s%d" % sig, ccserver_section("s%d" % sig) + ECHO)
            self.assertTrue(os.path.exists(server.pidfile))
            self.assertEqual(server.stop(sig), 0)
            self.assertFalse(os.path.exists(server.pidfile), "pidfile left behind")
            self.assertIn("stopped", server.output())

    def test_messages_while_stopping_get_an_answer(self):
        """A handler still finishing serves on; one already stopped answers "stopping"."""
        ini = ECHO.replace("[routes]\n", "[routes]\na = h:a\n")
        ini += "\n[h:a]\nhandler = plugins.tagger\nstop-delay = 3\n"
        server = self.start_server("s", ccserver_section("s") + ini)
        sock = self.dealer(server.endpoint)
        server.send_signal(signal.SIGTERM)
        server.wait_log(r"stopping tagger")
        reply = self.query(sock, "echo.request", {"target": "s"}, qid=b"Q2")
        self.assertEqual(reply.type, "error")
        self.assertEqual(reply.get_body()["code"], "stopping")
        self.assertEqual(self.query(sock, "a.x", {}, qid=b"Q3").type, "reply")
        self.assertEqual(server.stop(), 0)
        self.assertIn("stopped", server.output())

    def test_daemon_mode_and_stop_command(self):
        server = self.write_server("d", ccserver_section("d") + ECHO)
        result = self.run_command(server.command("-d"))
        self.assertEqual(result.returncode, 0, result.stderr)
        pid = int(wait_for(lambda: read_file(server.pidfile), what=server.pidfile))
        endpoint = server.wait_listening()
        reply = self.query(self.dealer(endpoint), "echo.request", {"target": "d"})
        self.assertEqual(reply.type, "echo.response")
        again = self.run_command(server.command("-d"))
        self.assertNotEqual(again.returncode, 0)
        self.assertIn(
            "pidfile %s: process %d is running" % (server.pidfile, pid), again.stdout + again.stderr
        )
        self.assertEqual(self.run_command(server.command("-s")).returncode, 0)
        wait_for(lambda: not os.path.exists(server.pidfile), what="pidfile removed")
        wait_for(lambda: not pid_alive(pid), what="daemon exit")

    def test_daemon_needs_pidfile(self):
        ini = ccserver_section("np").replace("pidfile = {tmp}/np.pid\n", "") + ECHO
        server = self.write_server("np", ini)
        result = self.run_command(server.command("-d"))
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("-d needs a pidfile: set pidfile in [ccserver]", result.stderr)

    def test_bind_failure_is_reported(self):
        first = self.start_server("first", ccserver_section("first") + ECHO)
        out = self.start_failing("second", ccserver_section("second", socket=first.endpoint) + ECHO)
        self.assertIn("cannot start", out)
        self.assertIn("Address already in use", out)


class TestReload(CCTestCase):
    def ask(self, sock, msgtype):
        return self.query(sock, msgtype, {}).get_body()

    def test_sighup_applies_route_and_handler_changes(self):
        ini = ccserver_section("r") + TAGGED
        server = self.start_server("r", ini, tag_a="one")
        sock = self.dealer(server.endpoint)
        a1, b1 = self.ask(sock, "a.x"), self.ask(sock, "b.x")
        self.assertEqual(a1["tag"], "one")

        # change h:a, keep h:b, add a route c -> h:b
        server.write_ini(
            ini.replace("{tag_a}", "two")
            .replace("{tmp}", self.tmp)
            .replace("b = h:b\n", "b = h:b\nc = h:b\n", 1)
        )
        server.send_signal(signal.SIGHUP)
        server.wait_log(r"reloaded: 4 routes")
        a2, b2, c2 = self.ask(sock, "a.x"), self.ask(sock, "b.x"), self.ask(sock, "c.x")
        self.assertEqual(a2["tag"], "two")
        self.assertNotEqual(a2["instance"], a1["instance"], "changed handler not recreated")
        self.assertEqual(b2["instance"], b1["instance"], "unchanged handler recreated")
        self.assertEqual(c2["instance"], b1["instance"], "one instance per section")
        server.wait_log(r"stopping tagger one")

    def test_broken_config_on_reload_keeps_running(self):
        ini = ccserver_section("r") + TAGGED
        server = self.start_server("r", ini, tag_a="one")
        sock = self.dealer(server.endpoint)
        server.write_ini(
            ini.replace("{tmp}", self.tmp).replace(
                "handler = plugins.tagger\ntag = {tag_a}", "handler = no.such.module"
            )
        )
        server.send_signal(signal.SIGHUP)
        server.wait_log(r"reload failed, keeping the running config: .*no\.such\.module")
        self.assertEqual(self.ask(sock, "a.x")["tag"], "one")

    def test_broken_reload_leaks_no_worker_threads(self):
        """Handlers made for a config that then fails are stopped, their threads too."""
        ini = ccserver_section("r") + "[routes]\necho = h:echo\n[h:echo]\nhandler = echo\n"
        server = self.start_server("r", ini)

        def threads():
            with open("/proc/%d/status" % server.proc.pid) as f:
                return int(next(line.split()[1] for line in f if line.startswith("Threads:")))

        before = threads()
        infowriter = (
            "[h:%s]\nhandler = infowriter\ndstdir = " + self.tmp + "\nworker-threads = %d\n"
        )
        broken = ini.replace("{tmp}", self.tmp).replace(
            "echo = h:echo\n", "echo = h:echo\npub.a = h:a\npub.b = h:b\n"
        )  # h:a is made (8 threads), then h:b fails
        server.write_ini(broken + infowriter % ("a", 8) + infowriter % ("b", 0))
        for n in range(3):
            server.send_signal(signal.SIGHUP)
            server.wait_stat("count.reload_failed", n + 1)
        # leaked, 3 x 8 threads would stay; stopping them joins each on a thread of the loop's
        # executor (one at a time per plan), so what stays is fewer than one plan's 8
        wait_for(lambda: threads() < before + 8, what="the failed plans' threads to end")

    def test_reload_command(self):
        ini = ccserver_section("r") + TAGGED
        server = self.start_server("r", ini, tag_a="one")
        server.write_ini(ini.replace("{tmp}", self.tmp).replace("{tag_a}", "three"))
        self.assertEqual(self.run_command(server.command("-r")).returncode, 0)
        server.wait_log(r"reloaded")
        self.assertEqual(self.ask(self.dealer(server.endpoint), "a.x")["tag"], "three")

    def test_messages_flow_during_reloads(self):
        ini = ccserver_section("r") + TAGGED
        server = self.start_server("r", ini, tag_a="one")
        sock = self.dealer(server.endpoint)
        for i in range(5):
            server.write_ini(ini.replace("{tmp}", self.tmp).replace("{tag_a}", "t%d" % i))
            server.send_signal(signal.SIGHUP)
            for j in range(20):
                reply = self.query(sock, "b.x", {}, qid=b"Q%d.%d" % (i, j))
                self.assertEqual(reply.get_body()["tag"], "one")


class TestRolesAndConfig(CCTestCase):
    def test_handler_outside_its_role_refuses_to_start(self):
        ini = ccserver_section("l", role="local") + """
[routes]
x = h:x

[h:x]
handler = plugins.remoteonly
"""
        out = self.start_failing("l", ini)
        self.assertIn("[h:x]: handler plugins.remoteonly cannot be run in role local", out)
        self.assertIn("it runs in: remote", out)

    def test_role_allows_handler(self):
        ini = ccserver_section("r", role="remote") + """
[routes]
x = h:x

[h:x]
handler = plugins.remoteonly
"""
        server = self.start_server("r", ini)
        reply = self.query(self.dealer(server.endpoint), "x.y", {})
        self.assertEqual(reply.type, "reply.x.y")

    def test_unknown_role(self):
        out = self.start_failing("u", ccserver_section("u", role="central") + ECHO)
        self.assertIn("cc-role = central", out)

    def test_missing_role_warns_insecure(self):
        server = self.start_server("i", ccserver_section("i", role=None) + ECHO)
        server.wait_log(r"CC is running in insecure mode")

    def test_unknown_handler_names_section_and_known_handlers(self):
        out = self.start_failing(
            "h",
            ccserver_section("h") + """
[routes]
x = h:x

[h:x]
handler = nosuch
""",
        )
        self.assertIn("[h:x]: cannot load handler 'nosuch'", out)
        self.assertIn("proxy", out)

    def test_missing_routes_section(self):
        out = self.start_failing("m", ccserver_section("m"))
        self.assertIn("no section 'routes'", out)

    def test_missing_handler_section(self):
        out = self.start_failing("m", ccserver_section("m") + "\n[routes]\nx = h:gone\n")
        self.assertIn("no section [h:gone]", out)

    def test_missing_required_option(self):
        out = self.start_failing(
            "m",
            ccserver_section("m") + """
[routes]
log = h:proxy

[h:proxy]
handler = proxy
""",
        )
        self.assertIn("remote-cc", out)

    def test_bad_route_pattern(self):
        out = self.start_failing(
            "m", ccserver_section("m") + "\n[routes]\npub.* = h:echo\n" "[h:echo]\nhandler = echo\n"
        )
        self.assertIn("invalid route pattern 'pub.*'", out)


class TestHandlerFailures(CCTestCase):
    def test_crashing_handler_does_not_stop_others(self):
        self.allowed_log = [r"crasher", r"Traceback", r"RuntimeError", r"raise"]
        server = self.start_server(
            "c",
            ccserver_section("c") + """
[routes]
* = h:crash
echo = h:echo

[h:crash]
handler = plugins.crasher

[h:echo]
handler = echo
""",
        )
        sock = self.dealer(server.endpoint)
        sock.send_multipart(CCMessage.build("echo.request", {"target": "x"}, route=[b"Q1"]).frames)
        replies = {CCMessage(self.recv(sock)).type for _ in range(2)}
        self.assertEqual(replies, {"echo.response", "error"})
        server.wait_stat("count.crashed", 1)
        server.wait_log(r"h:crash crashed, dropping msg: echo\.request")


class TestStats(CCTestCase):
    def test_infofile_levels_and_counters(self):
        server = self.start_server(
            "s", ccserver_section("s", cc_stats="2", infofile_level="3") + ECHO
        )
        sock = self.dealer(server.endpoint)
        for i in range(3):
            self.query(sock, "echo.request", {"target": "x"}, qid=b"Q%d" % i)
        server.wait_stat("count.ok.msg.echo.request", 3)
        with open(server.infofile) as f:
            text = f.read()
        for header in (
            "name: s",
            "service: ccserver",
            "pid: %d" % server.proc.pid,
            "started: ",
            "info-period: 0.2",
            "libzmq: ",
            "[total]",
            "[latest]",
            "[avg:60]",
            "[avg:300]",
            "[avg:900]",
        ):
            self.assertIn(header, text)
        self.assertEqual(server.stats_total()["count"], 3)
        server.wait_log(r"\{.*count\.ok: 3")
