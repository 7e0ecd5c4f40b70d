"""cc-bench forward, twohop, echo: throughput and latency of cc-server against its baselines.

    cc-bench [forward] [--targets cc,zmqproxy,stock,direct] [--messages N] [--size B] ...
    cc-bench twohop    [--targets cc,zmqproxy]
    cc-bench echo      [--targets cc,zmqproxy] [--messages N]

``forward`` pushes N messages of a type and body size from S sender
processes through one hop into a sink process and reports what the sink
received per second; ``twohop`` does the same through two chained hops;
``echo`` measures round trips one at a time (p50, p99, p99.9).  Targets:

* ``cc``: cc-server (proxy handler for forwarding, echo handler for echo),
* ``zmqproxy``: libzmq's own ``zmq.proxy`` (C), the bar,
* ``stock``: a pyzmq ``ZMQStream`` forwarder, one message per callback,
* ``direct``: senders straight into the sink, no hop.

Every target runs in its own processes (:mod:`cctools.bench.roles`), targets
alternate run by run, and the median of the runs is reported with ratios
against ``zmqproxy`` and ``stock``.  For cc-server it also reports drops, CPU
per message and RSS.

The forwarding sender and sink are a small C program (``benchload.c``,
:mod:`cctools.bench.cload`) when a C compiler is there (``--load python``
uses Python ones): a Python sender is slower than ``zmq.proxy`` and would
make the bar look lower than it is.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from cctools.bench.cload import build_c_load
from cctools.bench.roles.load import make_body
from cctools.bench.scenarios import SCENARIOS as MODULE_SCENARIOS
from cctools.bench.scenarios import wait_logged

__all__ = ["main"]

SCENARIOS = ("forward", "twohop", "echo")
TARGETS = ("cc", "zmqproxy", "stock", "direct")
#: the cc proxy's zmq_hwm (and a queue-bytes to match): above the largest burst a run sends,
#: so that nothing is dropped
#: while a hop waits for the next (the promise is no loss below the HWM)
CC_HWM = 250000
START_TIMEOUT = 15.0


class Procs:
    """Child processes of one run; all stopped at the end."""

    def __init__(self, tmpdir: str) -> None:
        self.tmpdir = tmpdir
        self.children: List[subprocess.Popen] = []

    def role(self, *args: str) -> subprocess.Popen:
        return self.run(sys.executable, "-m", "cctools.bench.roles", *args)

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
    args = p.parse_args(argv)
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
