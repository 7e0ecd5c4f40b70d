"""Options declared once: each declaration against cc.ini(5) and against what the code reads,
and every config mistake an operator makes, against a real cc-server.

The declared-vs-documented-vs-read check prints exactly what is missing, one line each
(``<component>: <option> read at <file>:<line> but not declared``), so that an option added
the old way (a ``cf.get("x")`` without a declaration) is named at merge.
"""

import ast
import os
import re
import signal
import subprocess
import sys
import unittest
from typing import Dict, List, Tuple

from harness import REPO_DIR, TEST_DIR, CCTestCase, ccserver_section, wait_for
from test_docs import (
    CC_INI_5,
    CONFIG_GETTERS,
    HELPERS,
    SERVER_CF,
    is_config,
    man_sections,
    option_reads,
    scope,
)

from cc.daemon import DAEMONS, load_daemon_class
from cc.daemon.base import CCDaemon
from cc.daemon.plugins import CCDaemonPlugin
from cc.daemon.plugins.pg_logforward.example_logwatch import ProcessErrors
from cc.daemon.plugins.pg_logforward.forward import LogForward
from cc.handler import HANDLER_KEYS, HANDLERS, load_handler_class
from cc.jobs.env import JOB_OPTIONS
from cc.options import KINDS, REQUIRED, Option, format_default, parse_value
from cc.process import SCRIPT_OPTIONS
from cc.security import CURVE_CLIENT_DECLARED
from cc.server import SERVER_OPTIONS
from cc.taskclient import OPTIONS as TASKCLIENT_OPTIONS

ECHO = """
[routes]
echo = h:echo

[h:echo]
handler = echo
"""


def components() -> List[Tuple[str, Tuple[Option, ...], List[str], Tuple[str, ...]]]:
    """(man section, declared options, modules that read them, further man sections)."""
    found = [
        (
            "[ccserver] OPTIONS",
            SERVER_OPTIONS + CURVE_CLIENT_DECLARED,  # cc/crypto/curve.py reads both
            ["cc/server.py", "cc/sockopts.py", "cc/message.py", "cc/crypto/__init__.py",
             "cc/crypto/curve.py", "cc/hostname.py"],
            ("ZEROMQ SOCKET OPTIONS", "SIGNED AND ENCRYPTED MESSAGES", "CURVE", "Authorization"),
        ),
        ("DAEMONS", SCRIPT_OPTIONS + CCDaemon.declared(), ["cc/daemon/base.py"],
         ("SIGNED AND ENCRYPTED MESSAGES", "Authorization", "[ccserver] OPTIONS", "jobmgr")),
        ("pg_logforward", CCDaemonPlugin.MODULE + LogForward.OPTIONS + ProcessErrors.OPTIONS
         + load_daemon_class("pg_logforward").OPTIONS,
         ["cc/daemon/plugins/__init__.py", "cc/daemon/plugins/pg_logforward/forward.py",
          "cc/daemon/plugins/pg_logforward/example_logwatch.py"], ()),
        ("HANDLER SECTIONS", HANDLER_KEYS, ["cc/handler/__init__.py"], ()),
        ("[taskclient]", TASKCLIENT_OPTIONS, ["cc/taskclient.py"], ()),
    ]  # fmt: skip
    for name, modname in sorted(HANDLERS.items()):
        cls = load_handler_class("test", name)
        # jobmgr reads its job sections' pidfile too
        declared = cls.OPTIONS + (SCRIPT_OPTIONS if name == "jobmgr" else ())
        modules = [modname.replace(".", "/") + ".py"]
        modules += [path for path, sections in HELPERS.items() if name in sections]
        found.append(
            (name, declared, modules, ("ZEROMQ SOCKET OPTIONS",
             "CURVE", "HANDLER SECTIONS", "[ccserver] OPTIONS"))
        )  # fmt: skip
    for cls in sorted({load_daemon_class(n) for n in DAEMONS}, key=lambda c: c.__module__):
        name = cls.__module__.rsplit(".", 1)[-1]
        modules = [cls.__module__.replace(".", "/") + ".py"]
        modules += [path for path, sections in HELPERS.items() if name in sections]
        modules = [m for m in modules if "/plugins/" not in m]  # plug-in sections: above
        declared = cls.declared() + getattr(cls, "TASK_OPTIONS", ())
        found.append((name, declared, modules, ("DAEMONS", "jobmgr", "infosender",
                                                "[ccserver] OPTIONS", "Authorization")))  # fmt: skip
    return found


def literal_defaults(path: str) -> List[Tuple[str, int, str]]:
    """(option, line, default as text) of each config read with a literal default."""
    with open(os.path.join(REPO_DIR, path), encoding="utf8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in CONFIG_GETTERS or len(node.args) < 2:
            continue
        name, default = node.args[:2]
        if not (isinstance(name, ast.Constant) and is_config(node.func.value)):
            continue
        if isinstance(default, ast.Constant) and not isinstance(default.value, bool):
            found.append((name.value, node.lineno, str(default.value)))
        elif isinstance(default, ast.Constant):
            found.append((name.value, node.lineno, "yes" if default.value else "no"))
    return found


class TestDeclarations(unittest.TestCase):
    """Each component's declared options are documented, and the code reads no other."""

    def missing(self) -> List[str]:
        sections = man_sections(CC_INI_5)
        problems = set()
        for title, declared, modules, extra in components():
            names = {n for opt in declared for n in opt.names}
            titles = scope(sections, title, extra)
            bold = set().union(*(sections[t].bold for t in titles if t in sections))
            for opt in declared:
                if opt.name not in bold:
                    problems.add("%s: %s declared but not in doc/man/cc.ini.5" % (title, opt.name))
            for path in modules:
                for option, line, receiver in option_reads(path):
                    if option not in names and not receiver.endswith(SERVER_CF):
                        problems.add(
                            "%s: %s read at %s:%d but not declared" % (title, option, path, line)
                        )
        return sorted(problems)

    def test_declared_documented_and_read_agree(self):
        missing = self.missing()
        self.assertEqual(missing, [], "\n  " + "\n  ".join(missing))

    def test_defaults_at_the_reads_are_the_declared_ones(self):
        """Where the code still gives a default at the read, it is the declared one."""
        differ = []
        for title, declared, modules, _ in components():
            by_name = {name: opt for opt in declared for name in opt.names}
            for path in modules:
                for name, line, default in literal_defaults(path):
                    opt = by_name.get(name)
                    if opt is None or opt.default in (None, REQUIRED):
                        continue
                    try:
                        same = parse_value(opt, default) == parse_value(opt, format_default(opt))
                    except ValueError:
                        same = False
                    if not same:
                        differ.append("%s:%d %s: read with %r, declared %r"
                                      % (path, line, name, default, opt.default))  # fmt: skip
        self.assertEqual(differ, [], "\n  " + "\n  ".join(differ))

    def test_every_default_parses_as_its_kind(self):
        everything = SERVER_OPTIONS + JOB_OPTIONS + TASKCLIENT_OPTIONS
        for _, declared, _, _ in components():
            everything += declared
        for opt in everything:
            self.assertIn(opt.kind, KINDS, opt)
            if opt.default is not REQUIRED and opt.default is not None:
                parse_value(opt, format_default(opt))
            if opt.default is REQUIRED:
                self.assertTrue(opt.example, "%s is required: give it an example" % opt.name)

    def test_a_read_without_declaration_is_named(self):
        """The check can fail: an undeclared read is reported with its place."""
        saved = load_handler_class("test", "proxy").OPTIONS
        cls = load_handler_class("test", "proxy")
        cls.OPTIONS = tuple(o for o in saved if o.name != "queue-bytes")
        try:
            missing = self.missing()
        finally:
            cls.OPTIONS = saved
        self.assertTrue(
            any(re.match(r"proxy: queue-bytes read at cc/proxylink\.py:\d+ but not", m)
                for m in missing), missing)  # fmt: skip


class TestConfigMistakes(CCTestCase):
    """Each mistake of the issue, made in a real config and run by a real cc-server."""

    def server_ini(self, name: str, **options: str) -> str:
        return ccserver_section(name, role="local", **options) + ECHO

    def test_misspelt_protection_is_refused_at_start(self):
        out = self.start_failing("typo", self.server_ini("typo", cms_verfy_ca="ca"))
        self.assertIn(
            "typo.ini [ccserver]: unknown option cms-verfy-ca (did you mean cms-verify-ca?):"
            " refused",
            out,
        )

    def test_misspelt_protection_is_refused_on_reload(self):
        server = self.start_server("rl", self.server_ini("rl"))
        server.write_ini(open(server.ini).read().replace(
            "[ccserver]\n", "[ccserver]\ncurve-server-kye = /etc/cc/server.key_secret\n"))
        server.send_signal(signal.SIGHUP)
        server.wait_log(
            r"reload failed, keeping the running config: .*unknown option curve-server-kye"
            r" \(did you mean curve-server-key\?\)"
        )
        reply = self.query(self.dealer(server.endpoint), "echo.request", {"target": "x"})
        self.assertEqual(reply.type, "echo.response")

    def test_unknown_options_are_warned_with_the_closest_name(self):
        ini = self.server_ini("unk", stats_perod="3") + "pingg = tcp://127.0.0.1:1\n"
        server = self.start_server("unk", ini)
        server.wait_log(
            r"WARNING .*unk\.ini \[ccserver\]: unknown option stats-perod, ignored"
            r" \(did you mean stats-period\?\)"
        )
        server.wait_log(r"WARNING .*\[h:echo\]: unknown option pingg, ignored")

    def test_bad_values_name_file_section_option_and_value(self):
        cases = {
            "stats-period": ("abc", "expected a number of seconds"),
            "zmq_hwm": ("lots", "expected a whole number"),
            "cc-max-message-size": ("64Q", "expected a size such as 512K, 64M or 1G"),
        }
        for option, (value, expected) in cases.items():
            name = option.replace("_", "-")
            ini = self.server_ini(name).replace("stats-period = 0.2\n", "")
            ini = ini.replace("[routes]", "%s = %s\n[routes]" % (option, value))
            out = self.start_failing(name, ini)
            self.assertIn(
                "%s.ini [ccserver]: %s = %s: %s" % (name, option, value, expected), out
            )

    def test_check_command(self):
        good = self.write_server("good", self.server_ini("good", stats_perod="3"))
        result = self.run_command(good.command("--check"))
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("unknown option stats-perod, ignored (did you mean stats-period?)",
                      result.stdout)  # fmt: skip
        self.assertIn("good.ini is valid", result.stdout)
        self.assertFalse(os.path.exists(good.pidfile))  # started nothing
        jobs = (
            ccserver_section("bad", role="local")
            + "[routes]\njob = h:jobmgr\n[h:jobmgr]\nhandler = jobmgr\ndaemons = d:info\n"
            + "[d:info]\nmodule = cc.daemon.infosendr\n"
        )
        bad = self.write_server("bad", jobs)
        result = self.run_command(bad.command("--check"))
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            "[d:info]: module = cc.daemon.infosendr: no such module"
            " (did you mean cc.daemon.infosender?)",
            result.stderr,
        )

    def test_reload_command_checks_first(self):
        server = self.start_server("rc", self.server_ini("rc"))
        with open(server.ini) as f:
            server.write_ini(f.read().replace("stats-period = 0.2", "stats-period = abc"))
        result = self.run_command(server.command("-r"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("stats-period = abc", result.stderr)
        self.assertIn("reload not sent: the running server keeps its config", result.stderr)
        self.assertNotIn("SIGHUP", server.log_text())

    def test_daemon_mode_reports_a_failed_start(self):
        first = self.start_server("first", self.server_ini("first"))
        ini = self.server_ini("second").replace("tcp://127.0.0.1:*", first.endpoint)
        second = self.write_server("second", ini)
        result = self.run_command(second.command("-d"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot start: Address already in use", result.stderr)
        missing = self.write_server("missing", self.server_ini("missing").replace(
            "cc-socket = tcp://127.0.0.1:*\n", ""))  # fmt: skip
        result = self.run_command(missing.command("-d"))
        self.assertEqual(result.returncode, 1)
        self.assertIn("missing.ini [ccserver]: missing option cc-socket", result.stderr)

    def test_missing_log_and_pid_directories_are_made_or_named(self):
        ini = self.server_ini("dirs").replace("{tmp}/dirs.log", "{tmp}/new/log/dirs.log")
        ini = ini.replace("{tmp}/dirs.pid", "{tmp}/new/pid/dirs.pid")
        server = self.write_server("dirs", ini)
        server.logfile = os.path.join(self.tmp, "new", "log", "dirs.log")
        server.pidfile = os.path.join(self.tmp, "new", "pid", "dirs.pid")
        server.start()
        wait_for(lambda: os.path.exists(server.pidfile), what="pidfile")
        with open(os.path.join(self.tmp, "afile"), "w") as f:
            f.write("not a directory\n")
        blocked = self.server_ini("blocked").replace("{tmp}/blocked.log", "{tmp}/afile/x.log")
        out = self.start_failing("blocked", blocked)
        self.assertRegex(out, r"logfile = \S+/afile/x\.log: cannot create its directory: \S+/afile"
                              r" is a file")
        self.assertNotIn("Traceback", out)

    def test_daemon_ini_template_from_the_declarations(self):
        args = ["-m", "cc.daemon", "logtail", "--ini"]
        template = self.run_command([sys.executable, *args]).stdout
        self.assertEqual(template, self.run_command([sys.executable, "-OO", *args]).stdout)
        self.assertIn("[d:logtail]\nmodule = cc.daemon.logtail\n", template)
        self.assertIn("\nlogdir = /var/log/postgresql\n", template)
        self.assertIn("\n#restart-delay = 1\n", template)
        self.assertNotIn("loop_delay", template)

    def test_ini_template_runs_as_printed_in_a_fresh_home(self):
        home = os.path.join(self.tmp, "home")
        os.mkdir(home)
        env = dict(os.environ, HOME=home)
        template = self.run_command([sys.executable, "-m", "cc.server", "--ini"]).stdout
        optimized = self.run_command([sys.executable, "-OO", "-m", "cc.server", "--ini"]).stdout
        self.assertEqual(template, optimized)
        for word in ("loop_delay", "use_skylog = 1", "exception_sleep"):
            self.assertNotIn(word, template)
        # the one change a shared test machine needs: a free port
        text = re.sub(r"(?m)^cc-socket = .*$", "cc-socket = tcp://127.0.0.1:*", template)
        path = os.path.join(self.tmp, "t.ini")
        with open(path, "w") as f:
            f.write(text)
        proc = subprocess.Popen([sys.executable, "-m", "cc.server", path], env=dict(
            env, PYTHONPATH=os.pathsep.join(sys.path)), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)  # fmt: skip
        try:
            log = os.path.join(home, "log", "t.log")
            wait_for(lambda: "listening on" in (open(log).read() if os.path.exists(log) else ""),
                     what="the template's server to listen")  # fmt: skip
            self.assertTrue(os.path.exists(os.path.join(home, "pid", "t.pid")))
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
        self.assertEqual(proc.returncode, 0, err)


class TestJobMistakes(CCTestCase):
    """jobmgr: a job that can never start is a config error, at start and on reload."""

    JOBS = """
[routes]
job = h:jobmgr
log = h:locallog

[h:locallog]
handler = locallogger

[h:jobmgr]
handler = jobmgr
daemons = {daemons}

[d:info]
module = {module}
infodir = {tmp}
infomask = *.none
stats-period = 60

[d:script]
script = {script}
"""

    def jobs_ini(self, daemons: str, module: str = "infosender", script: str = "") -> Dict:
        return dict(
            ini=ccserver_section("jobs", role="local") + self.JOBS,
            daemons=daemons,
            module=module,
            script=script or os.path.join(TEST_DIR, "scripts", "stubborn.sh"),
        )

    def test_unimportable_module_is_refused_at_start(self):
        args = self.jobs_ini("d:info", module="cc.daemon.infosendr")
        out = self.start_failing("jobs", args.pop("ini"), **args)
        self.assertIn("[d:info]: module = cc.daemon.infosendr: no such module (did you mean"
                      " cc.daemon.infosender?)", out)  # fmt: skip

    def test_script_that_is_not_executable_is_refused(self):
        script = os.path.join(self.tmp, "plain.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\nsleep 100\n")
        args = self.jobs_ini("d:script", script=script)
        out = self.start_failing("jobs", args.pop("ini"), **args)
        self.assertIn("[d:script]: script = %s: not executable" % script, out)

    def test_short_daemon_name_runs_and_bad_module_on_reload_keeps_it(self):
        args = self.jobs_ini("d:info", module="infosender")
        server = self.start_server("jobs", args.pop("ini"), **args)
        wait_for(lambda: server.job_status("d:info").get("state") == "RUNNING",
                 what="infosender running")  # fmt: skip
        pid = server.job_status("d:info")["pid"]
        # its log records reach the host's log once: as log.* through locallogger, not
        # also as console output relayed by jobmgr
        server.wait_log(r"d:info started, connected to")
        started = [
            line for line in server.log_text().splitlines() if "d:info started, connected" in line
        ]
        self.assertEqual(len(started), 1, started)
        server.write_ini(open(server.ini).read().replace("module = infosender",
                                                         "module = infosendr"))  # fmt: skip
        server.send_signal(signal.SIGHUP)
        server.wait_log(r"reload failed, keeping the running config: \[d:info\]: module ="
                        r" infosendr: no such module \(did you mean infosender\?\)")  # fmt: skip
        server.wait_log(r"reload refused: daemons not sent SIGHUP")
        self.assertEqual(server.job_status("d:info")["pid"], pid)

    def test_output_lines_are_relayed_at_their_level_and_labelled(self):
        script = os.path.join(self.tmp, "talker.sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n"
                    "echo '2026-12-04 20:30:59,521 123 ERROR x: boom-out'\n"
                    "echo 'plain-err' >&2\n"
                    "echo '20:30:59,521 DEBUG x: chatter' >&2\n"
                    "echo 'plain-out'\n"
                    "exec sleep 100\n")  # fmt: skip
        os.chmod(script, 0o755)
        args = self.jobs_ini("d:script", script=script)
        server = self.write_server("jobs", args.pop("ini"), **args).start("-v")
        server.wait_log(r"\d ERROR \S+: Job d:script stdout: 2026\S+ \S+ 123 ERROR x: boom-out")
        server.wait_log(r"\d WARNING \S+: Job d:script stderr: plain-err")
        server.wait_log(r"DEBUG \S+: Job d:script stderr: 20:30:59,521 DEBUG x: chatter")
        server.wait_log(r"\d INFO \S+: Job d:script stdout: plain-out")

    def test_unknown_option_in_a_job_section_is_named(self):
        args = self.jobs_ini("d:info", module="infosender")
        ini = args.pop("ini").replace("infomask = *.none", "infomask = *.none\nscan-perod = 2")
        server = self.start_server("jobs", ini, **args)
        server.wait_log(r"WARNING .*\[d:info\]: unknown option scan-perod, ignored \(did you"
                        r" mean scan-period\?\)")  # fmt: skip


class TestClientMistakes(CCTestCase):
    """cc-send and cc-task: a mistake is one line and an exit status, never a traceback."""

    def command(self, name: str, *args: str):
        return self.run_command([sys.executable, "-m", name, *args])

    def test_endpoint_without_scheme(self):
        result = self.command("cc.client", "127.0.0.1:22632", "echo.request")
        self.assertEqual(result.returncode, 2)
        self.assertIn("cc-send: error: 127.0.0.1:22632: expected a URL such as"
                      " tcp://127.0.0.1:22632", result.stderr)  # fmt: skip
        self.assertNotIn("Traceback", result.stderr)

    def test_missing_blob_file(self):
        result = self.command("cc.client", "tcp://127.0.0.1:1", "log.info", "--blob", "nofile")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--blob nofile: No such file or directory", result.stderr)

    def test_type_the_server_routes_but_no_handler_takes_is_answered(self):
        server = self.start_server("echo", ccserver_section("echo", role="local") + ECHO)
        result = self.command("cc.client", "-t", "5", server.endpoint, "echo")
        self.assertEqual(result.returncode, 3, result.stderr)  # an error reply, at once
        self.assertIn('"code": "unsupported"', result.stdout)
        self.assertIn("echo takes echo.request, not echo", result.stdout)

    def test_cc_task_without_action_names_them_all(self):
        result = self.command("cc.taskclient", "client.ini")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.strip(), "cc-task: need --send, --hosts, --list or --show")

    def test_cc_task_config_mistakes(self):
        path = os.path.join(self.tmp, "client.ini")
        with open(path, "w") as f:
            f.write("[taskclient]\ncc = 127.0.0.1:22632\n")
        result = self.command("cc.taskclient", path, "--hosts")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr.strip(),
            "cc-task: %s [taskclient]: cc = 127.0.0.1:22632: expected a URL such as"
            " tcp://127.0.0.1:22632 (tcp, ipc or inproc)" % path,
        )


if __name__ == "__main__":
    unittest.main()
