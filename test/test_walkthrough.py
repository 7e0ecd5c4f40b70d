"""The operator's guide's "A fleet on one machine", run command by command as written.

The block's commands run in bash, in order, with ``HOME`` and ``CC_CONF`` pointing into the
test's directory and ``cc-server``, ``cc-send`` and ``cc-task`` those of this source tree.  The
one change: the examples' ports (10000-10006 and the fleet page's 9632) become free ports, in
the examples and in the commands alike, so that the test runs beside others.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest
from typing import Dict, List

from harness import REPO_DIR, child_env, pid_alive, read_file, wait_for

GUIDE = os.path.join(REPO_DIR, "doc", "operators-guide.md")
MARK = "<!-- test_walkthrough runs the commands of the block below, in order -->"
PORTS = ("10000", "10001", "10002", "10003", "10004", "10005", "10006", "9632")
#: commands whose answer comes once something has happened in the fleet (a runner registered,
#: a report arrived): run again until their output names this machine (bounded)
EVENTUAL = ("cc-task client.ini --hosts", "curl -s http")
COMMAND_TIMEOUT = 120.0


def walkthrough() -> List[str]:
    """The commands of the guide's block, one per line."""
    with open(GUIDE, encoding="utf8") as f:
        text = f.read()
    block = re.search(re.escape(MARK) + r"\n```sh\n(.*?)\n```", text, re.S)
    assert block is not None, "no walkthrough block in %s" % GUIDE
    return [line for line in block.group(1).splitlines() if line.strip()]


def free_ports(count: int) -> List[int]:
    """Ports nothing listens on now.  The walkthrough's servers bind ports written in their
    files before they start, so a socket bound here cannot be handed over: the port is
    released and bound again by the server (the kernel gives ephemeral ports in turn, so a
    clash with a parallel test is unlikely, and would fail the start visibly)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def remap(text: str, ports: Dict[str, str]) -> str:
    return re.sub(r"(?<=:)(%s)\b" % "|".join(ports), lambda m: ports[m.group(1)], text)


class TestFleetOnOneMachine(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = os.path.realpath(tempfile.mkdtemp(prefix="cctest-walk-"))
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.home = os.path.join(self.tmp, "home")
        self.conf = os.path.join(self.tmp, "conf")
        bindir = os.path.join(self.tmp, "bin")
        for path in (self.home, self.conf, bindir):
            os.mkdir(path)
        for command in ("cc-server", "cc-send", "cc-task"):
            wrapper = os.path.join(bindir, command)
            with open(wrapper, "w") as f:
                f.write('#!/bin/sh\nexec %s %s "$@"\n'
                        % (sys.executable, os.path.join(REPO_DIR, "bin", command)))  # fmt: skip
            os.chmod(wrapper, 0o755)
        self.ports = dict(zip(PORTS, map(str, free_ports(len(PORTS)))))
        for path in glob.glob(os.path.join(REPO_DIR, "conf", "*.ini")):
            with open(path, encoding="utf8") as f:
                text = remap(f.read(), self.ports)
            with open(os.path.join(self.conf, os.path.basename(path)), "w") as f:
                f.write(text)
        self.env = dict(child_env(), HOME=self.home, CC_CONF=self.conf)
        self.env["PATH"] = bindir + os.pathsep + self.env["PATH"]
        # the servers are local: curl must not go through a package build's http_proxy
        self.env["no_proxy"] = "127.0.0.1,localhost"
        self.addCleanup(self.stop_leftovers)

    def stop_leftovers(self) -> None:
        """Whatever the walkthrough started and did not stop (a failed step): TERM, waited."""
        for pidfile in glob.glob(os.path.join(self.home, "ccfleet", "run", "*.pid")):
            data = read_file(pidfile)
            if data and data.strip().isdigit() and pid_alive(int(data)):
                os.kill(int(data), signal.SIGTERM)
                wait_for(lambda: not pid_alive(int(data)), what="leftover %s" % pidfile)

    def run_line(self, line: str) -> str:
        result = subprocess.run(
            ["bash", "-e", "-c", "cd ~/ccfleet 2>/dev/null || true; " + line],
            capture_output=True, text=True, env=self.env, cwd=self.home,
            timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, "%s\n%s%s" % (line, result.stdout, result.stderr))
        return result.stdout + result.stderr

    def test_the_walkthrough_runs_as_written(self):
        hostname = socket.gethostname()
        outputs = {}
        for line in walkthrough():
            line = remap(line, self.ports)
            if not line.startswith(EVENTUAL):
                outputs[line] = self.run_line(line)
            else:
                outputs[line] = wait_for(
                    lambda: (lambda out: out if hostname in out else None)(self.run_line(line)),
                    what="%r to show %s" % (line, hostname),
                )
        said = "\n".join(outputs.values())
        self.assertIn("echo.response", said)
        self.assertNotIn("warning", said.lower())  # the examples use no unknown option
        run = os.path.join(self.home, "ccfleet", "run")
        wait_for(lambda: not glob.glob(os.path.join(run, "*.pid")), what="every server stopped")
        logs = glob.glob(os.path.join(self.home, "ccfleet", "log", "*.log"))
        self.assertGreaterEqual(len(logs), 7)
        for log in logs:
            with open(log, encoding="utf8") as f:
                text = f.read()
            self.assertNotIn("Traceback", text, log)
            self.assertIn("stopped", text, log)


if __name__ == "__main__":
    unittest.main()
