"""The host agent at rest: memory, CPU and wake-ups of a local cc and its five daemons.

    cc-bench agent [--seconds 30] [--settle 10] [--info-period 300] [--json]

Starts what the original's ``cclocal.ini`` runs on every host (a local cc with
locallogger, echo, a pinging proxy and jobmgr; jobmgr runs infosender,
infoscript, taskrunner, logtail and pg_logforward), with a hub for its proxy
to talk to (echo, infowriter and tailwriter answering, the rest disposed of), lets it settle, and then watches it doing nothing
for ``--seconds``.  Per process it reports:

* RSS and PSS (``/proc/PID/smaps_rollup``; PSS shares a page between the
  processes that map it, so the PSS of all processes adds up to what the
  agent really costs);
* CPU, as a percentage of one core;
* wake-ups per second: context switches of all its threads (each one is the
  thread going to sleep after having been woken);
* whether psycopg2, cryptography or server-side modules were imported
  (``/proc/PID/maps``: their shared objects or none).

The reference, measured in the same run, is a bare interpreter that has
imported pyzmq and tornado and sleeps.  ``--info-period`` is infoscript's
period; the original ran ``ps axuw`` every 10 s, which is work, not rest,
so the default here is longer than the measured window.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

from cctools.bench.scenarios import wait_logged

#: the daemon sections of the local cc, as the original's cclocal.ini names its jobs
DAEMONS = ("infosender", "infoscript", "taskrunner", "logtail", "pg_logforward")

#: the reference: an interpreter with what every cc process needs imported
REFERENCE = "import zmq, tornado.ioloop, sys; print('ready', flush=True); sys.stdin.read()"

HUB = """[ccserver]
job_name = hub
cc-socket = tcp://127.0.0.1:*
cc-role = remote
logfile = {tmp}/hub.log
pidfile = {tmp}/hub.pid

[routes]
echo = h:echo
pub = h:dispose
pub.infofile = h:info
pub.logtail = h:tail
log = h:dispose
task = h:dispose
job = h:dispose

[h:echo]
handler = echo

; the writers answer infosender and logtail, which resend what is not answered
[h:info]
handler = infowriter
dstdir = {tmp}/hub-info

[h:tail]
handler = tailwriter
dstdir = {tmp}/hub-tail

[h:dispose]
handler = disposer
"""

LOCAL = """[ccserver]
job_name = cclocal
cc-socket = tcp://127.0.0.1:*
cc-role = local
cc-stats = 2
logfile = {tmp}/cclocal.log
pidfile = {tmp}/cclocal.pid
infofile = {tmp}/cclocal.info

[routes]
log = h:locallog, h:proxy
echo = h:echo
pub = h:proxy
task = h:proxy
db = h:proxy
job = h:jobmgr

[h:locallog]
handler = locallogger

[h:echo]
handler = echo

[h:proxy]
handler = proxy
remote-cc = {hub}
ping = yes
ping-period = {ping_period}
zmq_hwm = 1000

[h:jobmgr]
handler = jobmgr
daemons = infosender, infoscript, taskrunner, logtail, pg_logforward

[infosender]
module = cc.daemon.infosender
infodir = {tmp}/infodir
infomask = info.*
compression = gzip
compression-level = 1
state-file = {tmp}/infosender.state

[infoscript]
module = cc.daemon.infoscript
info-script = ps axuw
info-period = {info_period}
info-name = info.server-stats.pl
compression = gzip

[taskrunner]
module = cc.daemon.taskrunner
local-id = benchhost

[logtail]
module = cc.daemon.logtail
logdir = {tmp}/infodir
logmask = postgresql-*.log
use-blob = yes
lag-max-bytes = 268435456
state-file = {tmp}/logtail.save

[pg_logforward]
module = cc.daemon.pg_logforward
listen-host = 127.0.0.1
listen-port = {udp_port}
log-format = netstr
plugins = p:forward

[p:forward]
module = cc.daemon.plugins.pg_logforward.forward
"""

#: shared objects that show a module was imported which an idle agent does not need
HEAVY_LIBRARIES = {"psycopg2": "psycopg2/_psycopg", "cryptography": "cryptography/hazmat"}


#: what an error in the local cc's log looks like
ERROR_WORDS = (" ERROR ", " CRITICAL ", "Traceback")


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(tmp: str, name: str, text: str) -> "tuple[subprocess.Popen, str]":
    """A cc-server from ``text``; the process and the address it listens on."""
    ini = os.path.join(tmp, name + ".ini")
    with open(ini, "w") as f:
        f.write(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cc.server", ini],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return (
            proc,
            wait_logged(proc, os.path.join(tmp, name + ".log"), ["listening on "])["listening on "],
        )
    except SystemExit:
        proc.kill()
        raise


def children(pid: int) -> Dict[str, int]:
    """Child processes of ``pid`` that are daemons: section -> pid."""
    found = {}
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                pids = [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
        for child in pids:
            try:
                with open("/proc/%d/cmdline" % child, "rb") as f:
                    argv = f.read().decode().split("\0")
            except FileNotFoundError:
                continue
            section = next((a for a in argv if a in DAEMONS), None)
            if section:
                found[section] = child
    return found


class Sample:
    """CPU time and context switches of a process, per thread, at one moment."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: thread "name/tid" -> (CPU seconds, context switches)
        self.threads: Dict[str, "tuple[float, int]"] = {}
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                    name = "%s/%s" % (f.read().strip(), tid)
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    cpu = int(f.read().split()[0]) / 1e9  # nanoseconds on a CPU
                with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                    switches = sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
            except FileNotFoundError:  # the thread ended
                continue
            self.threads[name] = (cpu, switches)
        self.time = time.monotonic()

    def since(self, before: "Sample") -> Dict[str, "tuple[float, float]"]:
        """Per thread: CPU percent of a core and wake-ups per second since ``before``."""
        span = self.time - before.time
        out = {}
        for name, (cpu, switches) in self.threads.items():
            cpu0, switches0 = before.threads.get(name, (0.0, 0))
            out[name] = (100.0 * (cpu - cpu0) / span, (switches - switches0) / span)
        return out


def memory(pid: int) -> Dict[str, float]:
    """RSS and PSS in MB, from smaps_rollup."""
    out = {}
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("Rss", "Pss"):
                out[key.lower() + "_mb"] = int(line.split()[1]) / 1024.0
    return out


def heavy_imports(pid: int) -> List[str]:
    """Which of :data:`HEAVY_LIBRARIES` the process has loaded."""
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read()
    return sorted(name for name, lib in HEAVY_LIBRARIES.items() if lib in maps)


def measure(pids: Dict[str, int], seconds: float) -> Dict[str, Dict]:
    before = {name: Sample(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    report = {}
    for name, pid in pids.items():
        threads = Sample(pid).since(before[name])
        report[name] = dict(
            memory(pid),
            cpu_pct=sum(cpu for cpu, _ in threads.values()),
            wakeups_per_s=sum(wakeups for _, wakeups in threads.values()),
            threads={t: {"cpu_pct": c, "wakeups_per_s": w} for t, (c, w) in threads.items()},
            heavy=heavy_imports(pid),
        )
    return report


def run(args: argparse.Namespace) -> Dict:
    tmp = tempfile.mkdtemp(prefix="cc-bench-agent-")
    procs: List[subprocess.Popen] = []
    try:
        os.mkdir(os.path.join(tmp, "infodir"))
        for name in ("info.disk", "postgresql-2026-11-29.log"):
            with open(os.path.join(tmp, "infodir", name), "w") as f:
                f.write("a line of text\n" * 100)
        hub, hub_url = start_server(tmp, "hub", HUB.format(tmp=tmp))
        procs.append(hub)
        text = LOCAL.format(
            tmp=tmp,
            hub=hub_url,
            info_period=args.info_period,
            ping_period=args.ping_period,
            udp_port=free_udp_port(),
        )
        local, _ = start_server(tmp, "cclocal", text)
        procs.append(local)
        reference = subprocess.Popen(
            [sys.executable, "-c", REFERENCE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        procs.append(reference)
        reference.stdout.readline()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while len(children(local.pid)) < len(DAEMONS):
            if time.monotonic() > deadline:
                raise SystemExit("cc-bench agent: daemons did not start, see %s" % tmp)
            time.sleep(0.2)
        time.sleep(args.settle)
        pids = dict(children(local.pid), cclocal=local.pid, reference=reference.pid)
        if len(pids) != len(DAEMONS) + 2:
            raise SystemExit("cc-bench agent: a daemon exited while settling, see %s" % tmp)
        result = summarize(measure(pids, args.seconds))
        result["log_errors"] = log_errors(os.path.join(tmp, "cclocal.log"))
        return result
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def log_errors(logfile: str) -> List[str]:
    """Lines of the local cc's log (its daemons' output included) that report errors."""
    with open(logfile, errors="replace") as f:
        return [line.rstrip() for line in f if any(w in line for w in ERROR_WORDS)]


def summarize(report: Dict[str, Dict]) -> Dict:
    agent = {k: v for k, v in report.items() if k != "reference"}
    total = {
        key: sum(p[key] for p in agent.values())
        for key in ("rss_mb", "pss_mb", "cpu_pct", "wakeups_per_s")
    }
    ref = report["reference"]["pss_mb"]
    total["pss_vs_reference"] = total["pss_mb"] / ref if ref else 0.0
    total["pss_per_process_vs_reference"] = total["pss_mb"] / len(agent) / ref if ref else 0.0
    return {"processes": report, "agent": total}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="cc-bench agent", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="how long to watch")
    p.add_argument("--settle", type=float, default=10.0, help="wait after start-up first")
    p.add_argument("--info-period", type=float, default=300.0, help="infoscript's period")
    p.add_argument("--ping-period", type=float, default=1.0, help="the proxy's (original: 1)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--threads", action="store_true", help="show each thread's share too")
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = p.parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print("idle for %.0f s after %.0f s settling:" % (args.seconds, args.settle))
    print("%-14s %8s %8s %8s %10s  %s" % ("process", "RSS MB", "PSS MB", "CPU %", "wakeups/s", ""))
    for name, v in result["processes"].items():
        print(
            "%-14s %8.1f %8.1f %8.3f %10.1f  %s"
            % (name, v["rss_mb"], v["pss_mb"], v["cpu_pct"], v["wakeups_per_s"],
               " ".join(v["heavy"]))
        )  # fmt: skip
        for thread, t in sorted(v["threads"].items()) if args.threads else ():
            print("  %-20s %17s %8.3f %10.1f" % (thread, "", t["cpu_pct"], t["wakeups_per_s"]))
    t = result["agent"]
    print(
        "%-14s %8.1f %8.1f %8.3f %10.1f" % ("agent", t["rss_mb"], t["pss_mb"], t["cpu_pct"],
                                            t["wakeups_per_s"])
    )  # fmt: skip
    print(
        "agent PSS / reference PSS: %.2f (%.2f per process)"
        % (t["pss_vs_reference"], t["pss_per_process_vs_reference"])
    )
    for line in result["log_errors"]:
        print("in the log: %s" % line)


if __name__ == "__main__":
    main()
