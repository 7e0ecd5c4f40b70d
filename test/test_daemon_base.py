"""The daemon base: config from the server's file, log forwarding, queries, clean stop."""

import signal
import subprocess
import sys

from harness import WAIT, CCTestCase, ccserver_section, child_env, wait_for

ROUTES = """
[routes]
log = h:locallog
echo = h:echo

[h:locallog]
handler = locallogger

[h:echo]
handler = echo

[d:test]
stats-period = 0.2
echo-timeout = {timeout}
"""


class TestDaemonBase(CCTestCase):
    def start_daemon(self, server, *command):
        if server.endpoint:
            server.pin_endpoint()
        command = command or (sys.executable, "-m", "plugins.echodaemon")
        proc = subprocess.Popen(
            [*command, server.ini, "d:test"],
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.addCleanup(_kill, proc)
        return proc

    def test_standalone_daemon_logs_through_cc_and_stops_cleanly(self):
        server = self.start_server("srv", ccserver_section("srv") + ROUTES, timeout="5")
        proc = self.start_daemon(server)
        # the daemon's records arrive as log.* at the server, job name <server job>.<section>
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ INFO hello from srv\.d:test")
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ INFO echo answered: echo\.response")
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ INFO \{.*echo\.asked: 1")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ INFO got SIGTERM, stopping")

    def test_stop_is_bounded_and_a_second_signal_changes_nothing(self):
        server = self.start_server("srv", ccserver_section("srv") + ROUTES + "stop-delay = 60\n",
                                   timeout="5")  # fmt: skip
        proc = self.start_daemon(server)
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ INFO hello from srv\.d:test")
        proc.send_signal(signal.SIGTERM)
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ INFO got SIGTERM, stopping")
        proc.send_signal(signal.SIGTERM)
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ WARNING SIGTERM again: already stopping")
        self.assertEqual(proc.wait(WAIT), 0)  # after FLUSH_TIMEOUT, not the 60 s asked for
        server.wait_log(r"\[srv\.d:test@\S+\] \S+ ERROR d:test did not stop in 5s")

    def test_cc_daemon_command_and_query_error_reply(self):
        ini = ccserver_section("srv") + ROUTES.replace("echo = h:echo\n", "", 1)
        server = self.start_server("srv", ini, timeout="5")
        proc = self.start_daemon(server, sys.executable, "-m", "cc.daemon", "plugins.echodaemon")
        server.wait_log(r"INFO echo answered: error")
        proc.send_signal(signal.SIGINT)
        self.assertEqual(proc.wait(10), 0)

    def test_query_times_out_without_server(self):
        server = self.write_server(
            "srv", ccserver_section("srv", socket="tcp://127.0.0.1:9") + ROUTES, timeout="0.3"
        )
        proc = self.start_daemon(server)
        lines = []
        wait_for(lambda: _read_until(proc, lines, "echo answered: nothing"), what="timeout")
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0)
        self.servers.remove(server)

    def test_unknown_daemon_module(self):
        result = self.run_command([sys.executable, "-m", "cc.daemon", "nosuch", "x.ini", "d:x"])
        self.assertEqual(result.returncode, 1)
        self.assertIn("cannot load daemon 'nosuch'", result.stderr)


def _read_until(proc, lines, text):
    line = proc.stdout.readline()
    lines.append(line)
    return text in line or (not line and proc.poll() is not None and "exited")


def _kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout:
        proc.stdout.close()
