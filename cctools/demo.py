"""cc-demo: run the whole picture on one machine in the foreground and show each delivery.

In a temporary work directory it starts the three servers of ``conf/demo``
(``central.ini`` end-service, ``proxy.ini``, ``local.ini`` whose jobmgr runs
infosender, logtail and taskexec) and, when PostgreSQL server binaries are
there, a throwaway cluster for ``central``'s dbhandler.  Then, a few times a
second, it publishes a ``log.info`` record to the local cc, rewrites an
info file and appends to a log that the daemons watch, and now and then
calls a database function; it sends one ``cc.task.sample`` with cc-task.
It prints a line for each delivery it sees: a record logged by ``central``,
an infofile or tailed bytes written under the work directory, each task
reply, each database answer.  Ctrl-C (or SIGTERM) stops the servers (and
with them jobmgr's daemons), the task client and the cluster, waits for
them and removes the work directory: no process is left behind.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

from cc.client import CCClient, QueryTimeout
from cc.msgtypes import LogMessage
from cctools.pgcluster import NoServer, PgCluster, PgError

#: what central's locallogger writes for a record
RECORD_RE = re.compile(r"\[(?P<who>[^\]]+)\] \S+ (?P<level>\w+) (?P<msg>.*)$")
SEND_INTERVAL = 0.4
INFO_EVERY = 5
DB_EVERY = 10
SERVERS = ("central.ini", "proxy.ini", "local.ini")
DB_FUNCTION = """create function public.demo_hello(name text) returns text language sql as
$$ select 'hello ' || name || ' from PostgreSQL ' || current_setting('server_version') $$"""


#: seconds between two lines of one kind of routine delivery (the rest are counted)
QUIET_PERIOD = 5.0


def say(line: str) -> None:
    print(line, flush=True)


class Throttle:
    """At most one line per kind of routine delivery every :data:`QUIET_PERIOD` seconds,
    the ones held back counted in the next: the task's lines stay on the screen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: Dict[str, float] = {}
        self._held: Dict[str, int] = {}

    def say(self, kind: str, line: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -QUIET_PERIOD) < QUIET_PERIOD:
                self._held[kind] = self._held.get(kind, 0) + 1
                return
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        say(line + (" (and %d more since the last line)" % held if held else ""))


ROUTINE = Throttle()


class Child:
    """A cc-server in its own session (the demo stops it, not the terminal's Ctrl-C);
    each line of its log (stderr) goes to ``on_line``."""

    def __init__(self, ini: str, on_line) -> None:
        self.name = os.path.basename(ini)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cc.server", ini],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self.listening = threading.Event()
        self._on_line = on_line
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if "listening on" in line:
                self.listening.set()
            self._on_line(self.name, line.rstrip("\n"))
        self.listening.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def show_server_line(name: str, line: str) -> None:
    m = RECORD_RE.search(line)
    if name == "central.ini" and m and "locallog" in line:
        text = "delivered log.%s from %s: %s" % (m["level"].lower(), m["who"], m["msg"])
        ROUTINE.say("log:" + m["who"], text)
    elif " WARNING " in line or " ERROR " in line or "listening on" in line or "Error" in line:
        say("[%s] %s" % (name, line))


class Watcher:
    """Prints what appeared or grew under the writers' directories since the last look."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.seen: Dict[str, tuple] = {}

    def poll(self) -> None:
        for kind, sub in (("infofile", "infofiles"), ("logtail", "tail")):
            top = os.path.join(self.work, sub)
            for root, _dirs, files in os.walk(top):
                for name in sorted(f for f in files if not f.startswith(".")):
                    path = os.path.join(root, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    old = self.seen.get(path, (0, 0))
                    self.seen[path] = (st.st_size, st.st_mtime_ns)
                    rel = os.path.relpath(path, top)
                    if kind == "infofile" and self.seen[path] != old:
                        ROUTINE.say("info", "delivered infofile %s (%d bytes)" % (rel, st.st_size))
                    elif kind == "logtail" and st.st_size > old[0]:
                        grown = st.st_size - old[0]
                        ROUTINE.say("tail", "delivered logtail %s: %d bytes written" % (rel, grown))


def render(confdir: str, name: str, work: str, **values: str) -> str:
    """``conf/demo/<name>`` with ``{tmp}`` and ``values`` filled in, written into ``work``."""
    with open(os.path.join(confdir, name), encoding="utf8") as f:
        text = f.read()
    for key, value in dict(values, tmp=work).items():
        text = text.replace("{%s}" % key, value)
    path = os.path.join(work, name)
    with open(path, "w", encoding="utf8") as f:
        f.write(text)
    return path


def start_db(work: str) -> Optional[PgCluster]:
    """A cluster with ``demo_hello()`` in the work directory, or None (with a note)."""
    cluster = PgCluster("ccdemo", basedir=work)
    try:
        cluster.create()
        conn = cluster.connect()
        try:
            conn.cursor().execute(DB_FUNCTION)
        finally:
            conn.close()
    except NoServer as ex:
        say("note: %s: no database calls in this demo" % ex)
        return None
    except (PgError, OSError) as ex:
        say("note: PostgreSQL did not start, no database calls in this demo: %s" % ex)
        cluster.destroy()
        return None
    say("PostgreSQL %s running for the dbhandler" % cluster.dsn())
    return cluster


class TaskSender(threading.Thread):
    """Runs cc-task to send ``cc.task.sample`` to this host through the local cc and
    prints its replies; again each second while taskexec has not registered yet."""

    def __init__(self, work: str, local: str) -> None:
        super().__init__(daemon=True)
        client_ini = os.path.join(work, "taskclient.ini")
        with open(client_ini, "w", encoding="utf8") as f:
            f.write("[taskclient]\ncc = %s\ntimeout = 10\nreply-timeout = 30\n" % local)
        self.argv = [sys.executable, "-m", "cc.taskclient", client_ini, "--send"]
        self.argv += ["task_host=%s" % socket.gethostname(), "task_handler=cc.task.sample"]
        self.argv += ["delay=0.5"]
        self.proc: Optional[subprocess.Popen] = None
        self.stopping = threading.Event()
        self.lock = threading.Lock()  # no cc-task starts once stop() has looked

    def run(self) -> None:
        while not self.stopping.wait(1):
            with self.lock:
                if self.stopping.is_set():
                    return
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    start_new_session=True,
                )
            assert self.proc.stdout is not None
            unrouted = False
            for line in self.proc.stdout:
                unrouted = unrouted or "no-route" in line
                if not unrouted:
                    say("task %s" % line.rstrip("\n"))
            if self.proc.wait() == 0 or not unrouted:
                return

    def stop(self) -> None:
        with self.lock:
            self.stopping.set()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()
        self.join(5)


def on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def run(confdir: str) -> int:
    signal.signal(signal.SIGTERM, on_sigterm)
    work = tempfile.mkdtemp(prefix="cc-demo-")
    os.chmod(work, 0o711)  # the cluster's directory inside is the postgres user's
    for sub in ("info", "log"):
        os.mkdir(os.path.join(work, sub))
    say("work directory %s" % work)
    children: List[Child] = []
    cluster: Optional[PgCluster] = None
    task: Optional[TaskSender] = None
    try:
        cluster = start_db(work)
        values = {"db_route": "; db: no PostgreSQL here", "dsn": ""}
        if cluster:
            values = {"db_route": "db = h:db", "dsn": cluster.dsn()}
        for ini in SERVERS:
            child = Child(render(confdir, ini, work, **values), show_server_line)
            children.append(child)
            if not child.listening.wait(15) or child.proc.poll() is not None:
                say("cc-demo: %s did not start" % ini)
                return 1
        local = "ipc://%s/local.sock" % work
        say("demo running: local cc %s -> proxy -> central; Ctrl-C stops it" % local)
        task = TaskSender(work, local)
        task.start()
        watcher = Watcher(work)
        with CCClient(local) as client:
            for n in range(1, sys.maxsize):
                tick(client, work, n, cluster is not None)
                watcher.poll()
                time.sleep(SEND_INTERVAL)
    except KeyboardInterrupt:
        say("\nstopping")
    finally:
        # a second Ctrl-C must not cut the cleanup short: the waits below are bounded
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if task:
            task.stop()
        for child in reversed(children):
            child.stop()
        if cluster:
            cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)
        say("stopped")
    return 0


def tick(client: CCClient, work: str, n: int, with_db: bool) -> None:
    """One round of input: a log record, a line in the tailed log, now and then an
    info file and a database call."""
    record = LogMessage(
        log_level="INFO",
        service_type="demo",
        job_name="demo-sender",
        log_msg="demo message %d" % n,
        log_time=time.time(),
        log_pid=os.getpid(),
    )
    client.send(record.to_message())
    with open(os.path.join(work, "log", "demo.log"), "a", encoding="utf8") as f:
        f.write("%s demo log line %d\n" % (time.strftime("%H:%M:%S"), n))
    if n % INFO_EVERY == 1:
        tmp = os.path.join(work, "info", ".demo.tmp")
        with open(tmp, "w", encoding="utf8") as f:
            f.write("round = %d\ntime = %s\n" % (n, time.ctime()))
        os.replace(tmp, os.path.join(work, "info", "demo.info"))  # whole versions only
    if with_db and n % DB_EVERY == 0:
        fields = {"function": "public.demo_hello", "params": ["demo %d" % n], "return": "one"}
        try:
            reply = client.query("db", fields, timeout=5)
            say("delivered db answer: %s %s" % (reply.type, reply.get_body().get("data")))
        except QueryTimeout:
            say("db call: no answer in 5 s")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="cc-demo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "confdir", nargs="?", default="conf/demo", help="the demo's INI files (conf/demo)"
    )
    args = parser.parse_args(argv)
    sys.exit(run(args.confdir))


if __name__ == "__main__":
    main()
