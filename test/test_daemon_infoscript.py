"""infoscript: a command's output as an infofile, periodically; failures and hangs contained."""

import bz2
import os
import socket

from daemonproc import DaemonTestCase
from harness import ccserver_section, pid_alive, read_file, wait_for

RECV = ccserver_section("recv") + """
[routes]
pub.infofile = h:info
log = h:locallog

[h:info]
handler = infowriter
dstdir = {tmp}/dst
host-subdirs = yes
write-compressed = keep

[h:locallog]
handler = locallogger

[d:script]
info-script = {script}
info-period = {period}
info-name = out/{fname}
info-timeout = {timeout}
max-output = {max_output}
compression = bzip2
use-blob = {blob}
stats-period = 0.2
"""


class TestInfoScript(DaemonTestCase):
    def run_script(
        self, script, period="5", timeout="10", blob="1", name="report", max_output="32M"
    ):
        self.server = self.start_server(
            "recv", RECV, script=script, period=period, timeout=timeout, blob=blob, fname=name,
            max_output=max_output,
        )  # fmt: skip
        self.dst = os.path.join(self.tmp, "dst", socket.gethostname())
        return self.start_daemon(self.server, "cc.daemon.infoscript", "d:script")

    def test_output_sent_compressed_and_periodically(self):
        self.run_script("echo out; echo err >&2; date +%%s%%N", period="0.3")
        path = os.path.join(self.dst, "report.bz2")  # basename of info-name, kept compressed
        first = wait_for(lambda: read_file(path), what=path)
        lines = bz2.decompress(first).splitlines()
        self.assertEqual(lines[:2], [b"out", b"err"])
        # start to start every 0.3 s: another run, another version of the file
        wait_for(lambda: read_file(path) != first, what="a second run")

    def test_base64_without_blob(self):
        self.run_script("printf hello", blob="0", name="plain")
        path = os.path.join(self.dst, "plain.bz2")
        wait_for(lambda: read_file(path), what=path)
        self.assertEqual(bz2.decompress(read_file(path)), b"hello")

    def test_failing_command_logged_counted_not_sent(self):
        self.run_script("echo broken; exit 3")
        self.server.wait_log(r"failed with exit status 3: broken")
        self.server.wait_log(r"INFO \{.*infoscript\.fails: 1")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "dst")))

    def test_hanging_command_killed_with_its_children(self):
        pidfile = os.path.join(self.tmp, "child.pid")
        self.run_script("sleep 30 & echo $! > %s; wait" % pidfile, timeout="0.5")
        pid = int(wait_for(lambda: read_file(pidfile), what="child pid").strip())
        self.server.wait_log(r"did not finish in 0\.5s, killed")
        wait_for(lambda: not pid_alive(pid), what="the command's child to be killed")

    def test_endless_output_killed_at_max_output(self):
        self.run_script("yes", timeout="600", max_output="1M")
        self.server.wait_log(r"'yes' wrote more than max-output \(1048576 bytes\), killed")
        self.server.wait_log(r"INFO \{.*infoscript\.fails: 1")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "dst")))

    def test_stop_while_command_runs(self):
        pidfile = os.path.join(self.tmp, "child.pid")
        daemon = self.run_script("sleep 30 & echo $! > %s; wait" % pidfile, timeout="60")
        pid = int(wait_for(lambda: read_file(pidfile), what="child pid").strip())
        self.assertEqual(daemon.stop(), 0)
        wait_for(lambda: not pid_alive(pid), what="the command's child to be killed")
