"""cc-demo: run the demo topology in the foreground and show each delivery.

Starts ``remote.ini`` and ``local.ini`` from the demo directory as cc-server
children, publishes a ``log.info`` record to the local cc a few times a
second, asks for an echo through the hop now and then, and prints a line
for every record the remote's locallogger received.  Ctrl-C stops the
servers and waits for them; no process is left behind.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional

from cc.client import CCClient, QueryTimeout
from cc.msgtypes import LogMessage

#: what the remote's locallogger writes for a record
RECORD_RE = re.compile(r"\[(?P<who>[^\]]+)\] \S+ (?P<level>\w+) (?P<msg>.*)$")
SEND_INTERVAL = 0.4
ECHO_EVERY = 10


class Child:
    """A cc-server child whose stderr is read line by line."""

    def __init__(self, ini: str, on_line) -> None:
        self.name = os.path.basename(ini)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cc.server", ini],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.endpoint: Optional[str] = None
        self.ready = threading.Event()
        self._on_line = on_line
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = re.search(r"listening on (\S+)", line)
            if m:
                self.endpoint = m.group(1)
                self.ready.set()
            self._on_line(self.name, line.rstrip("\n"))
        self.ready.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def show(name: str, line: str) -> None:
    m = RECORD_RE.search(line)
    if name == "remote.ini" and m and "locallog" in line:
        print("delivered log.%s from %s: %s" % (m["level"].lower(), m["who"], m["msg"]), flush=True)
    elif " WARNING " in line or " ERROR " in line or "listening on" in line or "Error" in line:
        print("[%s] %s" % (name, line), flush=True)


def run(confdir: str) -> int:
    children: List[Child] = []
    try:
        for ini in ("remote.ini", "local.ini"):
            child = Child(os.path.join(confdir, ini), show)
            children.append(child)
            if not child.ready.wait(15) or child.endpoint is None:
                print("cc-demo: %s did not start" % ini, file=sys.stderr)
                return 1
        local = children[1].endpoint
        print(
            "demo running: sender -> local cc %s -> remote cc %s; Ctrl-C stops it"
            % (local, children[0].endpoint),
            flush=True,
        )
        with CCClient(local) as client:
            for n in range(1, sys.maxsize):
                record = LogMessage(
                    log_level="INFO",
                    service_type="demo",
                    job_name="demo-sender",
                    log_msg="demo message %d" % n,
                    log_time=time.time(),
                    log_pid=os.getpid(),
                )
                client.send(record.to_message())
                if n % ECHO_EVERY == 0:
                    started = time.monotonic()
                    try:
                        client.query("echo.request", {"target": "demo"}, timeout=5)
                        print(
                            "echo through local -> remote: %.2f ms"
                            % ((time.monotonic() - started) * 1000),
                            flush=True,
                        )
                    except QueryTimeout:
                        print("echo through local -> remote: no answer in 5 s", flush=True)
                time.sleep(SEND_INTERVAL)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        for child in reversed(children):
            child.stop()
    return 0


def main(argv: Optional[List[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    sys.exit(run(args[0] if args else "conf/demo"))


if __name__ == "__main__":
    main()
