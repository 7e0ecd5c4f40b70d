"""`make run`: cc-demo shows each kind of delivery and leaves no process behind."""

import os
import re
import signal
import subprocess
import sys
import threading
import unittest

from harness import REPO_DIR, child_env, wait_for

from cctools.pgcluster import find_bindir

KINDS = [
    r"delivered log\.info from demo-sender@",
    r"delivered infofile \S+demo\.info",
    r"delivered logtail \S+demo\.log\S*: \d+ bytes written",
    r"task reply: launched",
    r"task >> \{\"i\": 3\}",
    r"task reply: finished \(0\)",
]
if find_bindir():
    KINDS.append(r"delivered db answer: reply\.db \['hello demo \d+ from PostgreSQL")


def processes_mentioning(text: str):
    """(pid, cmdline) of live processes whose command line contains ``text``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append((int(pid), cmdline))
    return found


class TestDemo(unittest.TestCase):
    def start(self):
        """cc-demo in its own process group, as a terminal runs it; its output collected."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cctools.demo", os.path.join(REPO_DIR, "conf", "demo")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(),
            cwd=REPO_DIR,
            start_new_session=True,
        )
        self.addCleanup(self.kill_leftovers)
        self.lines = []
        reader = threading.Thread(target=self.read, daemon=True)
        reader.start()
        self.addCleanup(reader.join, 10)
        found = wait_for(lambda: self.search(r"work directory (\S+)"), what="the work directory")
        self.work = found.group(1)

    def read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def search(self, pattern):
        return re.search(pattern, "".join(self.lines))

    def kill_leftovers(self):
        """Whatever a failing test left running, so that the suite goes on cleanly."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid, _ in processes_mentioning(getattr(self, "work", "\0")):
            os.kill(pid, signal.SIGKILL)

    def stop_and_check(self, send):
        send()
        self.assertEqual(self.proc.wait(30), 0, "".join(self.lines))
        wait_for(lambda: self.search(r"\nstopped\n"), what="'stopped'")
        out = "".join(self.lines)
        self.assertNotIn("Traceback", out)
        self.assertEqual(processes_mentioning(self.work), [], out)
        self.assertFalse(os.path.exists(self.work))

    def test_every_delivery_then_ctrl_c_stops_everything(self):
        self.start()
        for pattern in KINDS:
            wait_for(lambda: self.search(pattern), timeout=30, what=pattern)
        order = [self.search(p).start() for p in KINDS[3:6]]
        self.assertEqual(order, sorted(order))
        # Ctrl-C: SIGINT to the foreground process group
        self.stop_and_check(lambda: os.killpg(self.proc.pid, signal.SIGINT))

    def test_sigterm_stops_everything(self):
        self.start()
        wait_for(lambda: self.search(r"delivered logtail"), timeout=30, what="a logtail delivery")
        self.stop_and_check(lambda: self.proc.send_signal(signal.SIGTERM))


if __name__ == "__main__":
    unittest.main()
