"""Test harness: real cc-server processes on real sockets, raw pyzmq clients.

Each test gets a temporary directory.  :meth:`CCTestCase.start_server`
writes an INI file there (``{tmp}`` and any other ``{name}`` placeholders
replaced), starts ``cc-server`` with it as a child process and waits until
the server logs the endpoint it bound (``tcp://127.0.0.1:*`` binds a free
port, so tests never guess ports).  Everything started is stopped in
tearDown, every socket closed, and a server log containing a traceback
fails the test unless the test says it expects one.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from typing import Callable, Dict, List, Optional, Tuple, TypeVar

import zmq

from cc.message import CCMessage

TEST_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TEST_DIR)

#: seconds any single wait in a test may take
WAIT = 10.0

#: opens URLs of the servers under test, which are local: no http_proxy (a Debian package
#: build sets one that refuses every connection)
LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = WAIT, what: str = "condition") -> T:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def read_file(path: str) -> Optional[bytes]:
    """The file's bytes, or None while it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie awaiting its reaper counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def child_env() -> Dict[str, str]:
    """Environment for child processes: the test plug-ins importable."""
    env = dict(os.environ)
    paths = [TEST_DIR, REPO_DIR] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class ServerProcess:
    """One cc-server child process."""

    def __init__(self, tmpdir: str, name: str, ini_text: str) -> None:
        self.name = name
        self.ini = os.path.join(tmpdir, name + ".ini")
        self.logfile = os.path.join(tmpdir, name + ".log")
        self.stderr_file = os.path.join(tmpdir, name + ".stderr")
        self.infofile = os.path.join(tmpdir, name + ".info")
        self.pidfile = os.path.join(tmpdir, name + ".pid")
        self.endpoint = ""
        self.proc: Optional[subprocess.Popen] = None
        self.write_ini(ini_text)

    def write_ini(self, ini_text: str) -> None:
        with open(self.ini, "w", encoding="utf8") as f:
            f.write(ini_text)

    def command(self, *args: str) -> List[str]:
        return [sys.executable, "-m", "cc.server", *args, self.ini]

    def start(self, *args: str, wait: bool = True) -> "ServerProcess":
        with open(self.stderr_file, "ab") as err:
            self.proc = subprocess.Popen(
                self.command(*args),
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=child_env(),
                cwd=os.path.dirname(self.ini),
            )
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self) -> str:
        def bound() -> Optional[str]:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    "%s exited with %s:\n%s" % (self.name, self.proc.returncode, self.output())
                )
            m = re.search(r"listening on (\S+)", self.log_text())
            return m.group(1) if m else None

        self.endpoint = wait_for(bound, what="%s to listen" % self.name)
        return self.endpoint

    def pin_endpoint(self) -> None:
        """Write the bound address into the INI: daemons reading it connect there."""
        with open(self.ini, encoding="utf8") as f:
            text = f.read()
        self.write_ini(re.sub(r"(?m)^cc-socket = .*$", "cc-socket = " + self.endpoint, text, 1))

    def log_text(self) -> str:
        for path in (self.logfile, self.stderr_file):
            if os.path.exists(path) and os.path.getsize(path):
                with open(path, encoding="utf8", errors="replace") as f:
                    return f.read()
        return ""

    def output(self) -> str:
        parts = []
        for path in (self.logfile, self.stderr_file):
            if os.path.exists(path):
                with open(path, encoding="utf8", errors="replace") as f:
                    parts.append(f.read())
        return "\n".join(parts)

    def wait_log(self, pattern: str, timeout: float = WAIT) -> "re.Match[str]":
        """Wait until the log matches the regular expression ``pattern``."""
        return wait_for(
            lambda: re.search(pattern, self.output()),
            timeout,
            "%r in %s log" % (pattern, self.name),
        )

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Stop with ``sig``; return the exit code (KILL after ``timeout``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.send_signal(signal.SIGCONT)  # a server a failed test left frozen stops too
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("%s did not stop within %.0f s" % (self.name, timeout))
        return self.proc.returncode

    def stats_total(self) -> Dict[str, float]:
        """The ``[total]`` section of the server's infofile (empty if not written yet)."""
        try:
            with open(self.infofile, encoding="utf8") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        m = re.search(r"^\[total\]\n((?:.+\n?)*)", text, re.M)
        result: Dict[str, float] = {}
        for line in (m.group(1).splitlines() if m else []):
            key, sep, value = line.partition(": ")
            if sep:  # an empty [total] (before the first period) matches up to [latest]
                result[key] = float(value)
        return result

    def waiting(self) -> Dict[str, int]:
        """The infofile's ``[waiting]`` totals: replies waiting for full peers (zeros if none yet)."""
        text = read_file(self.infofile) or b""
        section = text.decode("utf8").partition("[waiting]\n")[2].split("\n\n", 1)[0]
        found = dict(line.split(": ", 1) for line in section.splitlines()[:3])
        return {k: int(found.get(k, 0)) for k in ("peers", "messages", "bytes")}

    def job_status(self, job: str) -> Dict[str, str]:
        """jobmgr's lines about ``job`` in the infofile (state, pid, starts, ...; empty if none)."""
        try:
            with open(self.infofile, encoding="utf8") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        return dict(re.findall(r"^%s\.(\w+): (.*)$" % re.escape(job), text, re.M))

    def wait_stat(self, key: str, at_least: float = 1, timeout: float = WAIT) -> float:
        """Wait until the counter ``key`` in the infofile's totals reaches ``at_least``."""
        return wait_for(
            lambda: self.stats_total().get(key, 0) >= at_least and self.stats_total()[key],
            timeout,
            "%s >= %s in %s stats" % (key, at_least, self.name),
        )


def ccserver_section(
    name: str, role: Optional[str] = "remote", socket: str = "tcp://127.0.0.1:*", **options: str
) -> str:
    """A ``[ccserver]`` section for a test server: free port, files in ``{tmp}``, fast stats."""
    lines = [
        "[ccserver]",
        "job_name = %s" % name,
        "logfile = {tmp}/%s.log" % name,
        "pidfile = {tmp}/%s.pid" % name,
        "infofile = {tmp}/%s.info" % name,
        "cc-socket = %s" % socket,
        "stats-period = 0.2",
    ]
    if role:
        lines.append("cc-role = %s" % role)
    lines.extend("%s = %s" % (k.replace("_", "-"), v) for k, v in options.items())
    return "\n".join(lines) + "\n"


class CCTestCase(unittest.TestCase):
    """Base of tests that run servers and clients."""

    #: regexps of log lines that must not appear in any server log
    FORBIDDEN_LOG = (r"Traceback", r"Exception")

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="cctest-")
        self.servers: List[ServerProcess] = []
        self.context = zmq.Context()
        self.sockets: List[zmq.Socket] = []
        self.allowed_log: List[str] = []
        self.expected_exit: Dict[str, int] = {}

    def tearDown(self) -> None:
        for sock in self.sockets:
            sock.close(0)
        self.context.term()
        problems = []
        for server in self.servers:
            try:
                code = server.stop()
            except AssertionError as ex:
                problems.append(str(ex))
                continue
            if code != self.expected_exit.get(server.name, 0):
                problems.append("%s exited with %s" % (server.name, code))
            text = server.output()
            for line in text.splitlines():
                if any(re.search(p, line) for p in self.FORBIDDEN_LOG) and not any(
                    re.search(p, line) for p in self.allowed_log
                ):
                    problems.append("%s logged: %s" % (server.name, line))
                    break
        if problems:
            dump = "\n".join("--- %s ---\n%s" % (s.name, s.output()[-4000:]) for s in self.servers)
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.fail("\n".join(problems) + "\n" + dump)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- servers -------------------------------------------------------------

    def write_server(self, name: str, ini: str, **subs: str) -> ServerProcess:
        """Write a server's INI (placeholders replaced) without starting it."""
        text = ini.replace("{tmp}", self.tmp)
        for key, value in subs.items():
            text = text.replace("{%s}" % key, value)
        server = ServerProcess(self.tmp, name, text)
        self.servers.append(server)
        return server

    def start_server(self, name: str, ini: str, **subs: str) -> ServerProcess:
        return self.write_server(name, ini, **subs).start()

    def start_failing(self, name: str, ini: str, **subs: str) -> str:
        """Start a server that must refuse its config: it exits 1; returns what it printed."""
        server = self.write_server(name, ini, **subs)
        self.expected_exit[name] = 1
        server.start(wait=False)
        self.assertEqual(server.proc.wait(WAIT), 1, server.output())
        return server.output()

    def run_command(self, args: List[str], timeout: float = WAIT) -> subprocess.CompletedProcess:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
        )

    # -- clients -------------------------------------------------------------

    def dealer(self, endpoint: str) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        self.sockets.append(sock)
        return sock

    def make_sink(self) -> Tuple[zmq.Socket, str]:
        """A ROUTER on a free port, standing in for a remote cc: (socket, its URL)."""
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        self.sockets.append(sock)
        return sock, "tcp://127.0.0.1:%d" % sock.bind_to_random_port("tcp://127.0.0.1")

    def recv(self, sock: zmq.Socket, timeout: float = WAIT) -> List[bytes]:
        if not sock.poll(int(timeout * 1000)):
            raise AssertionError("no message within %.1f s" % timeout)
        return sock.recv_multipart()

    def assert_silent(self, sock: zmq.Socket, timeout: float = 0.5) -> None:
        """Nothing arrives on ``sock`` within ``timeout`` seconds."""
        if sock.poll(int(timeout * 1000)):
            self.fail("unexpected message: %r" % sock.recv_multipart())

    def query(
        self,
        sock: zmq.Socket,
        msgtype: str,
        fields: Dict,
        qid: bytes = b"Q1",
        timeout: float = WAIT,
    ) -> CCMessage:
        """Send a request with query id ``qid``; return the reply (its route is checked)."""
        sock.send_multipart(CCMessage.build(msgtype, fields, route=[qid]).frames)
        reply = CCMessage(self.recv(sock, timeout))
        self.assertEqual(reply.route, [qid])
        return reply


class Pipeline:
    """A client that keeps ``inflight`` echo requests outstanding, reading replies as they come.

    Every request carries its own query id; :meth:`pump` sends what the window
    allows and reads what has arrived, without blocking; :meth:`run` pumps
    until ``total`` replies are in, failing when none arrives for ``stall``
    seconds.  The soak uses it too, so a stalled link shows there as well.
    """

    def __init__(self, sock: zmq.Socket, inflight: int, payload: str = "x") -> None:
        self.sock = sock
        self.inflight = inflight
        self.payload = payload
        self.sent = 0
        self.answered = 0

    @property
    def outstanding(self) -> int:
        return self.sent - self.answered

    def pump(self, limit: Optional[int] = None) -> None:
        """Send up to the window (``limit`` requests in all at the most) and read what is
        there, until a read finds nothing: the window is then full or ``limit`` reached."""
        while True:
            while self.outstanding < self.inflight and (limit is None or self.sent < limit):
                msg = CCMessage.build(
                    "echo.request", {"target": self.payload}, route=[b"P%d" % self.sent]
                )
                self.sock.send_multipart(msg.frames)
                self.sent += 1
            read = self.answered
            while True:
                try:
                    self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.answered += 1
            if self.answered == read:
                return

    def run(self, total: int, stall: float = WAIT) -> None:
        while self.answered < total:
            self.pump(total)
            if self.answered < total and not self.sock.poll(int(stall * 1000)):
                raise AssertionError(
                    "stalled: %d sent, %d answered, no reply for %.0f s"
                    % (self.sent, self.answered, stall)
                )
