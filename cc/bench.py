"""cc-bench: throughput and latency of cc-server against its baselines, side by side.

    cc-bench forward [--targets cc,zmqproxy,stock,direct] [--messages N] [--size B] ...
    cc-bench twohop  [--targets cc,zmqproxy]
    cc-bench echo    [--targets cc,zmqproxy] [--messages N]
    cc-bench signed | dbcalls | logtail | infowriter [options]   (:mod:`cc.benchmarks`)
    cc-bench all     every scenario above with its defaults: the README's figures

``forward`` pushes N messages of a type and body size from S sender
processes through one hop into a sink process and reports what the sink
received per second; ``twohop`` does the same through two chained hops;
``echo`` measures round trips one at a time (p50, p99, p99.9).  Targets:

* ``cc``: cc-server (proxy handler for forwarding, echo handler for echo),
* ``zmqproxy``: libzmq's own ``zmq.proxy`` (C), the bar,
* ``stock``: a pyzmq ``ZMQStream`` forwarder, one message per callback,
* ``direct``: senders straight into the sink, no hop.

Every target runs in its own processes, targets alternate run by run, and
the median of the runs is reported with ratios against ``zmqproxy`` and
``stock``.  For cc-server it also reports drops, CPU per message and RSS.

The forwarding sender and sink are a small C program (``cc/benchload.c``),
compiled on first use against pyzmq's libzmq when a C compiler is there
(``--load python`` uses Python ones): a Python sender is slower than
``zmq.proxy`` and would make the bar look lower than it is.
"""

import argparse
import ctypes.util
import glob
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import zmq

from cc.benchmarks import SCENARIOS as MODULE_SCENARIOS
from cc.benchmarks import wait_logged

__all__ = ["main"]

SCENARIOS = ("forward", "twohop", "echo")
TARGETS = ("cc", "zmqproxy", "stock", "direct")
SENDER_HWM = 1000
#: the cc proxy's zmq_hwm (and a queue-bytes to match): above the largest burst a run sends,
#: so that nothing is dropped
#: while a hop waits for the next (the promise is no loss below the HWM)
CC_HWM = 250000
START_TIMEOUT = 15.0


def make_body(msgtype: str, size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes (at least the fixed fields) for ``msgtype``."""
    fields = {"req": msgtype, "time": 1700000000.0, "hostname": "bench", "log_msg": ""}
    pad = size - len(json.dumps(fields))
    fields["log_msg"] = "x" * max(0, pad)
    return json.dumps(fields).encode()


# -- the processes -----------------------------------------------------------------


def build_c_load(tmpdir: str) -> Optional[str]:
    """Compile ``benchload.c`` into ``tmpdir``; its path, or None (no compiler or libzmq)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    zmq_dir = os.path.dirname(os.path.abspath(zmq.__file__))
    bundled = glob.glob(os.path.join(os.path.dirname(zmq_dir), "pyzmq.libs", "libzmq*.so*"))
    if bundled:  # a wheel: link the very library pyzmq loads (RPATH: its libsodium is there too)
        link = [bundled[0], "-Wl,--disable-new-dtags,-rpath," + os.path.dirname(bundled[0])]
    else:
        name = ctypes.util.find_library("zmq")  # the system's, which a distro's pyzmq uses
        link = ["-l:" + name] if name else []
    if not compiler or not link:
        return None
    binary = os.path.join(tmpdir, "benchload")
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "benchload.c")
    built = subprocess.run(
        [compiler, "-O2", "-o", binary, source, *link], capture_output=True, text=True
    )
    if built.returncode == 0:
        built = subprocess.run([binary], capture_output=True, text=True)  # usage: exit 2
        if built.returncode == 2 and "usage" in built.stderr:
            return binary
    print("cc-bench: cannot build the C load (%s)" % built.stderr.strip(), file=sys.stderr)
    return None


def role_sink(expected: int, idle: float) -> None:
    """Count messages; print the rate between the first and the last."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.RCVHWM, 100000)
    print(sock.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    recv, get, more = sock.recv, sock.get, zmq.RCVMORE
    received = nbytes = 0
    first = last = 0.0
    while received < expected and sock.poll(int(idle * 1000)):
        while received < expected:
            try:
                frame = recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            nbytes += len(frame)
            while get(more):
                nbytes += len(recv(zmq.NOBLOCK))
            received += 1
            last = time.perf_counter()
            if received == 1:
                first = last
    span = last - first
    rate = (received - 1) / span if received > 1 and span > 0 else 0.0
    print(
        json.dumps({"received": received, "rate": rate, "mbps": nbytes / span / 1e6 if span else 0})
    )


def role_send(url: str, count: int, msgtype: str, size: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, SENDER_HWM)
    sock.connect(url)
    time.sleep(0.3)  # connected before the sink's clock starts
    frames = [b"", msgtype.encode(), make_body(msgtype, size), b""]
    send = zmq.backend.Socket.send
    last = len(frames) - 1
    flags = [zmq.SNDMORE] * last + [0]
    for _ in range(count):
        for i in range(last + 1):
            send(sock, frames[i], flags[i])
    sock.close(linger=-1)
    ctx.term()


def role_echo_client(url: str, count: int, size: int) -> None:
    """Round trips one at a time; print latency percentiles in microseconds."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(url)
    body = make_body("echo.request", size)
    times: List[float] = []
    for n in range(count + 100):
        qid = b"Q%d" % n
        started = time.perf_counter()
        sock.send_multipart([qid, b"", b"echo.request", body, b""])
        if not sock.poll(5000):
            break
        sock.recv_multipart()
        if n >= 100:  # warm-up excluded
            times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    result = {"count": len(times)}
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
        result[name] = times[min(len(times) - 1, int(q * len(times)))] if times else 0.0
    print(json.dumps(result), flush=True)


def role_echo_responder() -> None:
    """The far end of the zmq.proxy echo baseline: reflect every message."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    print(sock.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    while True:
        sock.send_multipart(sock.recv_multipart())


def role_zmqproxy(upstream: str) -> None:
    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    back = ctx.socket(zmq.DEALER)
    back.connect(upstream)
    print(front.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    zmq.proxy(front, back)


def role_stock(upstream: str) -> None:
    """What a plain pyzmq/tornado forwarder looks like."""
    from tornado.ioloop import IOLoop
    from zmq.eventloop.zmqstream import ZMQStream

    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    back = ctx.socket(zmq.DEALER)
    back.connect(upstream)
    back_stream = ZMQStream(back)
    ZMQStream(front).on_recv(back_stream.send_multipart)
    print(front.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    IOLoop.current().start()


# -- orchestration -------------------------------------------------------------------


class Procs:
    """Child processes of one run; all stopped at the end."""

    def __init__(self, tmpdir: str) -> None:
        self.tmpdir = tmpdir
        self.children: List[subprocess.Popen] = []

    def role(self, *args: str) -> subprocess.Popen:
        return self.run(sys.executable, "-m", "cc.bench", "--role", *args)

    def run(self, *argv: str, stdin: Optional[bytes] = None) -> subprocess.Popen:
        """Start ``argv`` with its stdout piped (and ``stdin``, if given, written and closed)."""
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin is not None else None,
            text=stdin is None,
        )
        self.children.append(proc)
        if stdin is not None:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
            proc.stdin.close()  # type: ignore[union-attr]
        return proc

    def bound(self, *args: str) -> str:
        """Start a role that prints its port; return its URL."""
        proc = self.role(*args)
        return "tcp://127.0.0.1:%s" % proc.stdout.readline().strip()  # type: ignore[union-attr]

    def cc_server(self, name: str, routes: str) -> "CCServerProc":
        server = CCServerProc(self.tmpdir, name, routes)
        self.children.append(server.proc)
        return server

    def stop(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.children:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


class CCServerProc:
    """A cc-server started for a run, with its endpoint, CPU time and memory."""

    def __init__(self, tmpdir: str, name: str, routes: str) -> None:
        self.logfile = os.path.join(tmpdir, "%s-%d.log" % (name, time.monotonic_ns()))
        self.infofile = self.logfile[:-4] + ".info"
        ini = self.logfile[:-4] + ".ini"
        with open(ini, "w") as f:
            f.write(
                "[ccserver]\ncc-socket = tcp://127.0.0.1:*\ncc-role = remote\ncc-stats = 1\n"
                "stats-period = 1\nlogfile = %s\ninfofile = %s\n\n%s"
                % (self.logfile, self.infofile, routes)
            )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cc.server", ini],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.endpoint = wait_logged(self.proc, self.logfile, ["listening on "], START_TIMEOUT)[
            "listening on "
        ]

    def cpu_seconds(self) -> float:
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def drops(self) -> int:
        """Messages the server counted as dropped (any reason), from its infofile."""
        time.sleep(1.2)  # one stats period, so the infofile has the run's counters
        total = 0
        with open(self.infofile) as f:
            for line in f:
                if line.startswith("count.dropped"):
                    total += int(float(line.split(": ")[1]))
        return total


def proxy_routes(upstream: str) -> str:
    return (
        "[routes]\n* = h:proxy\n\n[h:proxy]\nhandler = proxy\nremote-cc = %s\nzmq_hwm = %d\n"
        "queue-bytes = 1G\n" % (upstream, CC_HWM)
    )


def run_forward(target: str, hops: int, args: argparse.Namespace, tmpdir: str) -> Dict:
    procs = Procs(tmpdir)
    total = args.messages - args.messages % args.senders
    try:
        if args.c_load:
            sink = procs.run(args.c_load, "sink", str(total), "3000")
        else:
            sink = procs.role("sink", "--messages", str(total))
        url = "tcp://127.0.0.1:%s" % sink.stdout.readline().strip()  # type: ignore[union-attr]
        servers = []
        for hop in range(hops if target != "direct" else 0):
            if target == "cc":
                servers.append(procs.cc_server("hop%d" % hop, proxy_routes(url)))
                url = servers[-1].endpoint
            else:
                url = procs.bound(target, "--upstream", url)
        cpu0 = [s.cpu_seconds() for s in servers]
        count = str(total // args.senders)
        if args.c_load:
            body = make_body(args.type, args.size)
            senders = [procs.run(args.c_load, "send", url, count, args.type, stdin=body)
                       for _ in range(args.senders)]  # fmt: skip
        else:
            argv = ["send", "--url", url, "--messages", count, "--type", args.type]
            senders = [procs.role(*argv, "--size", str(args.size)) for _ in range(args.senders)]
        for proc in senders:
            proc.wait()
        result = json.loads(sink.stdout.readline())  # type: ignore[union-attr]
        result["lost"] = total - result["received"]
        if servers:
            cpu = sum(s.cpu_seconds() for s in servers) - sum(cpu0)
            result["cpu_us_per_msg"] = cpu / max(1, result["received"]) * 1e6
            result["rss_mb"] = max(s.rss_mb() for s in servers)
            result["dropped"] = sum(s.drops() for s in servers)
        return result
    finally:
        procs.stop()


def run_echo(target: str, args: argparse.Namespace, tmpdir: str) -> Dict:
    procs = Procs(tmpdir)
    try:
        if target == "cc":
            url = procs.cc_server(
                "echo", "[routes]\necho = h:echo\n\n[h:echo]\nhandler = echo\n"
            ).endpoint
        else:
            url = procs.bound(target, "--upstream", procs.bound("echo-responder"))
        client = procs.role(
            "echo-client", "--url", url, "--messages", str(args.messages), "--size", str(args.size)
        )
        return json.loads(client.stdout.readline())  # type: ignore[union-attr]
    finally:
        procs.stop()


def bench(args: argparse.Namespace) -> Dict[str, List[Dict]]:
    results: Dict[str, List[Dict]] = {t: [] for t in args.targets}
    with tempfile.TemporaryDirectory(prefix="cc-bench-") as tmpdir:
        args.c_load = None
        if args.scenario != "echo" and args.load != "python":
            args.c_load = build_c_load(tmpdir)
            if args.c_load is None and args.load == "c":
                raise SystemExit("cc-bench: cannot build the C load (needs cc and libzmq)")
        if not args.json:
            print("load: %s" % ("C (benchload)" if args.c_load else "Python"), flush=True)
        for run in range(args.runs):
            for target in args.targets:
                if args.scenario == "echo":
                    res = run_echo(target, args, tmpdir)
                else:
                    res = run_forward(target, 2 if args.scenario == "twohop" else 1, args, tmpdir)
                results[target].append(res)
                if not args.json:
                    print("run %d %-8s %s" % (run + 1, target, _short(res)), flush=True)
    return results


def _short(res: Dict) -> str:
    return ", ".join(
        "%s %s" % (k, _number(v) if isinstance(v, float) else v) for k, v in res.items()
    )


def _number(v: float) -> str:
    """Rates to a tenth, ratios and small figures to three decimals."""
    return "%.3f" % v if abs(v) < 10 else "%.1f" % v


def summarize(scenario: str, results: Dict[str, List[Dict]]) -> Dict[str, Dict]:
    key = "p50" if scenario == "echo" else "rate"
    summary: Dict[str, Dict] = {}
    for target, runs in results.items():
        summary[target] = {
            k: statistics.median(r[k] for r in runs)
            for k in runs[0]
            if all(isinstance(r.get(k), (int, float)) for r in runs)
        }
    for base in ("zmqproxy", "stock"):
        if base in summary and "cc" in summary and summary[base][key]:
            summary["cc"]["vs_" + base] = summary["cc"][key] / summary[base][key]
    return summary


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in MODULE_SCENARIOS:
        return importlib.import_module("cc.benchmarks." + argv[0]).main(argv[1:])
    if argv and argv[0] == "all":
        return run_all(argv[1:])
    p = argparse.ArgumentParser(
        prog="cc-bench",
        description=__doc__.split("\n\n")[0],
        epilog="other scenarios: all, %s (each has --help)" % ", ".join(MODULE_SCENARIOS),
    )
    p.add_argument("scenario", nargs="?", default="forward", choices=SCENARIOS)
    p.add_argument("--targets", default=None, help="comma list of: " + ", ".join(TARGETS))
    p.add_argument("--messages", type=int, default=None, help="messages per run")
    p.add_argument("--size", type=int, default=212, help="body bytes")
    p.add_argument("--type", default="log.info", help="message type for forwarding")
    p.add_argument("--senders", type=int, default=1, help="sender processes")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument(
        "--load",
        choices=("auto", "c", "python"),
        default="auto",
        help="sender and sink for forwarding: C if it builds (auto), or Python",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON only")
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--upstream", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role:
        return _run_role(args)
    default_targets = "cc,zmqproxy" if args.scenario != "forward" else "cc,zmqproxy,stock,direct"
    args.targets = (args.targets or default_targets).split(",")
    unknown = set(args.targets) - set(TARGETS) - {"direct"}
    if unknown or (args.scenario == "echo" and {"stock", "direct"} & set(args.targets)):
        p.error("targets for %s: %s" % (args.scenario, default_targets))
    if args.messages is None:
        args.messages = 5000 if args.scenario == "echo" else 200000
    summary = summarize(args.scenario, bench(args))
    if args.json:
        load = "c" if args.c_load else "python"
        print(json.dumps({"scenario": args.scenario, "load": load, "summary": summary}, indent=1))
        return
    print(
        "median of %d runs (%s, %d messages, %d-byte body):"
        % (args.runs, args.scenario, args.messages, args.size)
    )
    for target, values in summary.items():
        print("  %-8s %s" % (target, _short(values)))


def run_all(argv: Sequence[str]) -> None:
    """Every scenario with its defaults, one after the other; one that cannot run says why."""
    if argv:
        raise SystemExit("cc-bench all takes no options; run a scenario alone to change them")
    for scenario in (*SCENARIOS, *MODULE_SCENARIOS):
        print("== cc-bench %s" % scenario, flush=True)
        try:
            main([scenario])
        except SystemExit as ex:
            if ex.code:
                print("cc-bench %s did not finish: %s" % (scenario, ex.code), flush=True)
        print(flush=True)


def _run_role(args: argparse.Namespace) -> None:
    if args.role == "sink":
        role_sink(args.messages, idle=3.0)
    elif args.role == "send":
        role_send(args.url, args.messages, args.type, args.size)
    elif args.role == "echo-client":
        role_echo_client(args.url, args.messages, args.size)
    elif args.role == "echo-responder":
        role_echo_responder()
    elif args.role == "zmqproxy":
        role_zmqproxy(args.upstream)
    elif args.role == "stock":
        role_stock(args.upstream)


if __name__ == "__main__":
    main()
