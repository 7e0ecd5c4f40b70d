"""Daemons as real child processes, the way an operator (or jobmgr) starts them."""

import os
import signal
import subprocess
import sys

from harness import WAIT, CCTestCase, child_env


class DaemonProcess:
    """``python -m cc.daemon <module> <server ini> <section>``; output in ``<tmp>/<section>.out``.

    ``module`` is a daemon's short name or module path (with ``as_main``, a
    module path run as ``python -m <module>``, as jobmgr runs it);
    ``expected_exit`` is the exit code the test expects when it is stopped
    (checked in tearDown).
    """

    def __init__(self, server, module, section, as_main=False):
        server.pin_endpoint()
        self.module = module
        self.expected_exit = 0
        self.outfile = os.path.join(os.path.dirname(server.ini), section.replace(":", "_") + ".out")
        with open(self.outfile, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m"]
                + ([] if as_main else ["cc.daemon"])
                + [module, server.ini, section],
                env=child_env(),
                cwd=os.path.dirname(server.ini),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self):
        with open(self.outfile, encoding="utf8", errors="replace") as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM):
        """Stop with ``sig``; the exit code (killed and None if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


class DaemonTestCase(CCTestCase):
    """Tests that run daemons: each must exit 0 when stopped, before the servers stop."""

    def setUp(self):
        super().setUp()
        self.daemons = []

    def start_daemon(self, server, module, section, as_main=False):
        daemon = DaemonProcess(server, module, section, as_main)
        self.daemons.append(daemon)
        return daemon

    def tearDown(self):
        problems = []
        for daemon in self.daemons:
            code = daemon.stop()
            if code != daemon.expected_exit:
                problems.append("%s exited with %s:\n%s" % (daemon.module, code, daemon.output()))
        try:
            super().tearDown()
        finally:
            if problems:
                self.fail("\n".join(problems))
