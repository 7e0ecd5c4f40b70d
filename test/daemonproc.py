"""Daemons as real child processes of a test, reading a test server's INI."""

import os
import signal
import subprocess
import sys

from harness import child_env


def start_daemon(test, server, module, section):
    """Run ``python -m cc.daemon MODULE <server ini> SECTION``; output in ``<tmp>/<section>.out``.

    The server's bound endpoint is pinned into its INI first; the process is
    killed at the test's cleanup if it is still running.
    """
    if server.endpoint:
        server.pin_endpoint()
    out = open(os.path.join(test.tmp, section.replace(":", "_") + ".out"), "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cc.daemon", module, server.ini, section],
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    test.addCleanup(_kill, proc, out)
    return proc


def stop_daemon(proc, timeout=10):
    """SIGTERM, and the exit code."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def _kill(proc, out):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    out.close()
