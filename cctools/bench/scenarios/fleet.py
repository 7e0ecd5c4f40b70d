"""A fleet's traffic through a proxy to the end-services, unsigned and signed.

    cc-bench fleet [--hosts 100,1000,5000] [--seconds 10] [--modes unsigned,signed] [--json]
                   [--proxy cc|c]
    cc-bench fleet --ha [--hosts 1000] [--seconds 20]    two hubs, shards, a hub killed

Simulated hosts, each with its own ZeroMQ identity and connection (as a
local cc connects to its proxy), send a host's usual mix through one proxy
cc-server to five end-service cc-servers, one per handler: per host and
second 5 ``log.info`` of 300 bytes (logwriter), one 4 KB ``pub.logtail``
fragment (tailwriter, acknowledged), one ``pub.stats`` (statswriter), one
10 KB ``pub.infofile`` a minute (infowriter, acknowledged), and a
``task.register`` at start (taskrouter).  The load is the C program
(``cctools/bench/benchload.c``, ``fleet``): it sends every message at its time from a
schedule made beforehand, each host's sends spread over the second.
A ``pub.logtail`` fragment the tailwriter refuses ``busy`` (or ``gap``: one
before it was refused) the load sends again, in order, as logtail does;
those refusals are reported apart (``tail_refused``) and are not drops,
the fragments they held count once delivered.  (Signed, a resent fragment
is a replay and is refused as one: it counts as an error then.)

Reported per host count and mode: sent and delivered (counted by the
end-services), drops (anywhere: hosts whose queue was full, the proxy, the
end-services), p50/p99 delivery latency (send to acknowledgement, of the
acknowledged kinds), the p99 of the first and last third of the run, CPU of
each server as a share of one core, its CPU seconds per host-second and
**hosts per core** (hosts / that share: what one core of that role carries
with this mix, the figure to size a deployment by, each role on machines of
its own), the load's own CPU apart, and per server the largest host count
it sustained: everything delivered, nothing dropped, its CPU below 90% of a
core and the latency neither growing nor a backlog (the last third's p99
under 1 s, and at most twice the first third's or under 50 ms).

CPU is counted per process (``/proc/PID/stat``) over the steady state only:
from a quarter of the run (2 s at most) after the clock starts, once the
registrations and the proxy's first sends to each host are over, to the end
of the schedule; start-up and connection set-up are not in it.  The part
of it spent in libzmq's I/O threads (``cpu_zmq_io``: receiving and sending
on the network, where no Python runs) is reported apart.

``--proxy c`` puts the C router of ``benchload.c`` (forwarding by type
prefix, no parsing, no counters) in the proxy's place: what a proxy costs
with libzmq and the kernel alone, the bar for cc-server's proxy.

Signed (``cms-sign`` at the senders, ``cms-verify-ca`` at the end-services):
each message is signed by its host's key (three signer certificates from a
throwaway CA that :mod:`cctools.bench.keys` makes, shared round-robin) before the clock starts, since the load
must not be what limits the run, and a real host signs only its own few
messages a second.  Every message is signed once and sent once: its body
carries the host, a sequence number and its own time, so no two signatures
are alike and the end-services' replay cache stays on (a replayed message
would be refused and counted as ``count.invalid.replay``).  The time window
is widened to an hour, since pre-signed messages are older than a live
host's would be.  Pre-signing costs about a millisecond a message, so large
signed runs take minutes to prepare.
"""

import argparse
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any, Dict, List, Optional, Sequence, Tuple

from cctools.bench.scenarios import wait_logged

#: kinds of message, in the C load's numbering: type, service, acknowledged
KINDS = (
    ("log.info", "logwriter", False),
    ("pub.logtail", "tailwriter", True),
    ("pub.stats", "statswriter", False),
    ("pub.infofile", "infowriter", True),
    ("task.register", "taskrouter", False),
)
#: the end-service's counter of messages of each kind done (written, registered)
DONE_COUNTER = {
    "log.info": "logwriter.lines",
    "pub.logtail": "tailwriter.fragments",
    "pub.stats": "statswriter.stats",
    "pub.infofile": "written_files",
    "task.register": "task.register",
}
#: end-service -> route prefix and handler options
SERVICES = {
    "logwriter": ("log", "handler = logwriter\ndstdir = {dir}/logs\n"),
    "tailwriter": ("pub.logtail", "handler = tailwriter\ndstdir = {dir}/tails\n"),
    "statswriter": ("pub.stats", "handler = statswriter\ndstdir = {dir}/stats\n"),
    "infowriter": ("pub.infofile", "handler = infowriter\ndstdir = {dir}/infos\n"),
    "taskrouter": ("task", "handler = taskrouter\n"),
}
LOG_SIZE = 300
TAIL_SIZE = 4096
INFO_SIZE = 10240
SIGNERS = ("user1", "server", "host2")  # the leaf certificates of the throwaway keystore
#: a server keeps up below this share of one core
CPU_LIMIT = 0.9
#: and while acknowledgements take less than this (ms, p99 of the run's last third)
LATENCY_LIMIT = 1000.0
#: what libzmq names its I/O threads
ZMQ_IO_THREAD = "ZMQbg/IO"
#: opens the servers' /status: they are local, so no http_proxy applies
LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- the schedule ----------------------------------------------------------------------


class Message:
    """One message of the schedule, as the C load sends it."""

    __slots__ = ("at_us", "host", "kind", "frames")

    def __init__(self, at_us: int, host: int, kind: int, frames: List[bytes]) -> None:
        self.at_us = at_us
        self.host = host
        self.kind = kind
        self.frames = frames  # ["", type, body, signature] (+ blob)


def host_name(host: int) -> str:
    return "fleet-%05d" % host


def make_fields(
    kind: int, host: int, second: int, seq: int, now: float
) -> Tuple[Dict, Optional[bytes]]:
    """The body fields (and blob) of the ``seq``-th message of a kind from ``host``."""
    name = host_name(host)
    base: Dict[str, Any] = {"hostname": name, "time": now}
    if kind == 0:
        fields = dict(
            base,
            log_level="INFO",
            service_type="app",
            job_name=name + ".app",
            log_pid=1000 + host,
            log_line=seq,
            log_function="work",
            log_time=now,
            log_msg="",
        )
        pad = LOG_SIZE - len(json.dumps(dict(fields, req="log.info")))
        fields["log_msg"] = ("request %d done " % seq).ljust(max(0, pad), "x")
        return fields, None
    if kind == 1:
        return (
            dict(
                base,
                filename="/var/log/postgresql/postgresql.log",
                comp="",
                fpos=second * TAIL_SIZE,
                origin=0,  # as logtail says: the copy begins at 0, whichever fragment comes first
                st_dev=2049,
                st_ino=100000 + host,
                op_mode="classic",
                mode="b",
                ack=True,
            ),
            TAIL_BLOB,
        )
    if kind == 2:
        counters = {"count": 7 * seq, "bytes": 2100 * seq, "count.ok": 7 * seq}
        return (
            dict(base, job_name=name + ".cc", service_type="ccserver", counters=counters, period=1),
            None,
        )
    if kind == 3:
        return (
            dict(base, filename="/var/lib/cc/info/info.ps", mtime=now, comp="", data="", ack=True),
            INFO_BLOB,
        )
    return dict(base, host=name), None


TAIL_BLOB = (b"2026-11-29 10:00:00 UTC [123] LOG:  checkpoint complete\n" * 80)[:TAIL_SIZE]
INFO_BLOB = (b"root 1 0.0 0.1 168000 11000 ? Ss 09:00 0:01 /sbin/init\n" * 200)[:INFO_SIZE]


def schedule(hosts: int, seconds: int) -> List[Tuple[int, int, int, int, int]]:
    """(at_us, host, kind, second, seq) of every message, in send order."""
    out = []
    for host in range(hosts):
        phase = host / hosts  # hosts spread over the second
        out.append((int(phase * 1e6 / 10), host, 4, 0, 0))  # task.register at start
        info_at = phase * 60
        for second in range(seconds):
            for k in range(5):
                at = second + (phase + k / 5) % 1.0
                out.append((int(at * 1e6), host, 0, second, second * 5 + k))
            out.append((int((second + (phase + 0.1) % 1.0) * 1e6), host, 1, second, second))
            out.append((int((second + (phase + 0.5) % 1.0) * 1e6), host, 2, second, second))
            if second <= info_at < second + 1:
                out.append((int(info_at * 1e6), host, 3, second, 0))
    out.sort()
    return out


def build_messages(
    plan: Sequence[Tuple[int, int, int, int, int]], keystore: Optional[str], first: int = 0
) -> List[Message]:
    """The frames of every planned message; signed with the host's key when ``keystore``.

    Hosts are named from number ``first`` on (a load of its own for each part of a fleet)."""
    from cc.message import CCMessage

    now = time.time()
    sealers: Dict[str, Any] = {}
    msgs = []
    for at_us, host, kind, second, seq in plan:
        fields, blob = make_fields(kind, first + host, second, seq, now + at_us / 1e6)
        msg = CCMessage.build(KINDS[kind][0], fields, blob=blob)
        if keystore:
            signer = SIGNERS[host % len(SIGNERS)]
            if signer not in sealers:
                from cc.crypto import CryptoContext

                sealers[signer] = CryptoContext(keystore=keystore, sign_name=signer)
            msg = sealers[signer].seal(msg)
        msgs.append(Message(at_us, host, kind, list(msg.frames)))
    return msgs


def _build_part(args: Tuple[Sequence, Optional[str]]) -> List[Message]:
    return build_messages(*args)


def render(hosts: int, seconds: int, keystore: Optional[str], first: int = 0) -> List[Message]:
    """Every message of a run; signing is spread over the machine's cores."""
    plan = schedule(hosts, seconds)
    if not keystore:
        return build_messages(plan, None, first)
    import multiprocessing

    workers = os.cpu_count() or 1
    parts = [(plan[i::workers], keystore) for i in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        built = [m for part in pool.map(_build_part, parts) for m in part]
    built.sort(key=lambda m: m.at_us)
    return built


def write_schedule(path: str, hosts: int, msgs: Sequence[Message]) -> None:
    """The file the C load reads (format in cctools/bench/benchload.c, do_fleet)."""
    blobs: Dict[bytes, int] = {}
    with open(path, "wb") as f:
        records = []
        for m in msgs:
            _, mtype, body, sig, *blob = m.frames
            index = 0xFFFFFFFF
            if blob:
                index = blobs.setdefault(blob[0], len(blobs))
            acked = int(KINDS[m.kind][2])
            records.append(
                struct.pack("<IIBBHIII", m.host, m.at_us, m.kind, acked, len(mtype), len(body),
                            len(sig), index) + mtype + body + sig
            )  # fmt: skip
        f.write(b"CCFL" + struct.pack("<III", hosts, len(blobs), len(records)))
        for blob in blobs:
            f.write(struct.pack("<I", len(blob)) + blob)
        f.writelines(records)


# -- the servers -----------------------------------------------------------------------


def cpu_seconds(pid: int, zmq_io: bool = False) -> float:
    """User and system CPU seconds process ``pid`` has used so far (``zmq_io``: in its libzmq
    I/O threads only, which receive and send on the network: the part no Python code runs in)."""
    stats = ["/proc/%d/stat" % pid]
    if zmq_io:
        tasks = glob.glob("/proc/%d/task/*" % pid)
        stats = [t + "/stat" for t in tasks if _thread_name(t).startswith(ZMQ_IO_THREAD)]
    total = 0
    for path in stats:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _thread_name(task: str) -> str:
    try:
        with open(task + "/comm") as f:
            return f.read().strip()
    except OSError:  # the thread has ended
        return ""


class Server:
    """A cc-server of the run: its address, counters (over HTTP) and CPU time."""

    def __init__(self, tmp: str, name: str, role: str, body: str, crypto: str = "") -> None:
        self.name = name
        self.logfile = os.path.join(tmp, name + ".log")
        ini = os.path.join(tmp, name + ".ini")
        with open(ini, "w") as f:
            f.write(
                "[ccserver]\njob_name = %s\ncc-socket = tcp://127.0.0.1:*\ncc-role = %s\n"
                "cc-stats = 2\nstats-period = 3600\nstate-period = 3600\nzmq_hwm = 100000\n"
                "metrics-http = 127.0.0.1:0\nlogfile = %s\n%s\n%s"
                % (name, role, self.logfile, crypto, body)
            )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cc.server", ini],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        found = wait_logged(self.proc, self.logfile, ["listening on ", "metrics on http://"])
        self.endpoint = found["listening on "]
        self.http = found["metrics on http://"].split("/")[0]

    def totals(self) -> Dict[str, float]:
        with LOCAL_HTTP.open("http://%s/status" % self.http, timeout=30) as reply:
            return json.load(reply)["totals"]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class CRouter:
    """``--proxy c``: the C router of :mod:`cctools.bench.cload` in the proxy's place, the
    bar (what libzmq and the kernel cost a proxy without any Python); no counters."""

    def __init__(self, load: str, routes: Dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [load, "route", *("%s=%s" % kv for kv in routes.items())],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint:
            raise SystemExit("cc-bench fleet: the C router did not start")

    def totals(self) -> Dict[str, float]:
        return {}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def start_servers(
    tmp: str, keystore: Optional[str], c_router: Optional[str] = None
) -> Dict[str, Any]:
    """The end-services, and the proxy (``c_router``: the C load binary, whose router
    stands in for it)."""
    crypto = ""
    if keystore:
        # three certificates sign for the whole simulated fleet: host-signers lets them
        crypto = ("cms-keystore = %s\ncms-verify-ca = ca\ncms-time-window = 3600\n"
                  "host-signers = fleet-signers\n[fleet-signers]\nfleet-* = %s\n"
                  % (keystore, "; ".join("CN=" + name for name in SIGNERS)))  # fmt: skip
    servers: Dict[str, Server] = {}
    try:
        for name, (prefix, handler) in SERVICES.items():
            servers[name] = Server(
                tmp, name, "end-service",
                "[routes]\n%s = h:%s\n\n[h:%s]\n%s" % (prefix, name, name,
                                                      handler.format(dir=tmp)),
                crypto,
            )  # fmt: skip
        if c_router:
            routes_c = {prefix: servers[n].endpoint for n, (prefix, _) in SERVICES.items()}
            servers["proxy"] = CRouter(c_router, routes_c)
            return servers
        routes = "".join("%s = h:to_%s\n" % (p, n) for n, (p, _) in SERVICES.items())
        sections = "".join(
            "\n[h:to_%s]\nhandler = proxy\nremote-cc = %s\nzmq_hwm = 100000\n"
            % (n, servers[n].endpoint)
            for n in SERVICES
        )
        servers["proxy"] = Server(tmp, "proxy", "proxy", "[routes]\n" + routes + sections)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


# -- a run ---------------------------------------------------------------------------


def delivered(servers: Dict[str, Any]) -> Tuple[Dict[str, int], Dict[str, Dict[str, float]]]:
    """Messages of each kind the end-services are done with, and every server's counters."""
    totals = {name: server.totals() for name, server in servers.items()}
    counts = {
        mtype: int(totals[service].get(DONE_COUNTER[mtype], 0)) for mtype, service, _ in KINDS
    }
    return counts, totals


def run_fleet(
    load: str, hosts: int, seconds: int, keystore: Optional[str], idle: float, c_router: bool
) -> Dict:
    tmp = tempfile.mkdtemp(prefix="cc-bench-fleet-")
    servers: Dict[str, Any] = {}
    try:
        started = time.monotonic()
        msgs = render(hosts, seconds, keystore)
        path = os.path.join(tmp, "schedule")
        write_schedule(path, hosts, msgs)
        prepare = time.monotonic() - started
        del msgs
        servers = start_servers(tmp, keystore, load if c_router else None)
        proc = subprocess.Popen(
            [load, "fleet", servers["proxy"].endpoint, path, str(int(idle * 1000))],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "start":
            raise SystemExit("cc-bench fleet: the load did not start")
        # steady state: the registrations and the proxy's first sends to each host are over
        time.sleep(settle_seconds(seconds))
        pids = {name: s.proc.pid for name, s in servers.items()}
        pids["load"] = proc.pid
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        io0 = {name: cpu_seconds(s.proc.pid, zmq_io=True) for name, s in servers.items()}
        t0 = time.monotonic()
        proc.stdout.readline()  # "sent": the schedule is done
        span = time.monotonic() - t0
        cpu = {name: (cpu_seconds(pid) - cpu0[name]) / span for name, pid in pids.items()}
        cpu_io = {
            name: (cpu_seconds(s.proc.pid, zmq_io=True) - io0[name]) / span
            for name, s in servers.items()
        }
        load_cpu = cpu.pop("load")
        load_result = json.loads(proc.stdout.readline())
        proc.wait()
        sent = {mtype: load_result["sent"][i] for i, (mtype, _, _) in enumerate(KINDS)}
        counts, totals = wait_delivered(servers, sent, idle)
        row = report(hosts, seconds, sent, counts, totals, cpu, load_result, prepare)
        row.update(capacity(hosts, cpu, span), load_cpu=load_cpu, cpu_zmq_io=cpu_io,
                   proxy="c" if c_router else "cc")  # fmt: skip
        return row
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def settle_seconds(seconds: int) -> float:
    """How long after the clock starts CPU is not counted (a quarter of the run, 2 s at most)."""
    return min(2.0, seconds / 4)


def capacity(hosts: int, cpu: Dict[str, float], span: float) -> Dict[str, Any]:
    """Per server, CPU seconds per host-second and hosts per core, from ``cpu`` (a core's share
    over the ``span`` seconds of steady state)."""
    per_host = {name: share / hosts for name, share in cpu.items()}
    return {
        "window_s": span,
        "cpu_s_per_host_s": per_host,
        "hosts_per_core": {name: (1 / c if c else None) for name, c in per_host.items()},
    }


def wait_delivered(servers: Dict[str, Server], sent: Dict[str, int], idle: float):
    """Counters once everything arrived, or nothing more did for ``idle`` seconds."""
    last, since = None, time.monotonic()
    while True:
        counts, totals = delivered(servers)
        if all(counts[t] >= n for t, n in sent.items()):
            return counts, totals
        if counts != last:
            last, since = counts, time.monotonic()
        elif time.monotonic() - since > idle:
            return counts, totals
        time.sleep(0.5)


def dropped(totals: Dict[str, float]) -> int:
    """Messages a server dropped or refused, whatever the reason, each counted once.

    Reasons have keys of their own (``count.dropped.queue_full``, a handler's
    ``logwriter.dropped``); refusals are in ``count.invalid`` (and again per code).
    """
    return int(
        sum(
            v
            for k, v in totals.items()
            if k == "count.invalid"
            or ("dropped" in k and not k.startswith(("bytes", "seconds")) and ".msg." not in k)
        )
    )


def report(hosts, seconds, sent, counts, totals, cpu, load, prepare) -> Dict:
    drops = {name: dropped(t) for name, t in totals.items()}
    for mtype, service, _ in KINDS:  # handed to the handler, which refused or lost it
        routed = totals[service].get("count.ok.msg." + mtype, 0)
        if mtype == "pub.logtail":  # refused and sent again: the resend is routed too
            routed -= load["tail_resent"]
        drops[service] += int(max(0, routed - counts[mtype]))
    drops["hosts"] = sum(load["host_full"])
    total_sent = sum(sent.values())
    total_delivered = sum(min(counts[t], n) for t, n in sent.items())
    p99_first, p99_last = load["p99_first_ms"], load["p99_last_ms"]
    growing = p99_last > max(2 * p99_first, 50.0) or p99_last > LATENCY_LIMIT
    return {
        "hosts": hosts,
        "seconds": seconds,
        "prepare_s": prepare,
        "sent": total_sent,
        "delivered": total_delivered,
        "by_type": {t: {"sent": n, "delivered": counts[t]} for t, n in sent.items()},
        "drops": drops,
        "errors": load["errors"],
        "first_error": load["first_error"],
        "tail_refused": tail_refused([load]),
        "acks": load["acks"],
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "p99_first_ms": p99_first,
        "p99_last_ms": p99_last,
        "latency_growing": growing,
        "load_max_lag_ms": load["max_lag_ms"],
        "cpu": cpu,
        "totals": totals,
    }


def tail_refused(loads: Sequence[Dict]) -> Dict[str, int]:
    """``pub.logtail`` refusals of the C loads: ``busy``, ``gap`` (behind a refused one),
    how many fragments were sent again, and how many were still refused when the load ended."""
    keys = {"busy": "tail_busy", "gap": "tail_gap", "resent": "tail_resent",
            "not_resent": "tail_not_resent"}  # fmt: skip
    return {k: sum(int(load[v]) for load in loads) for k, v in keys.items()}


def sustains(server: str, row: Dict) -> bool:
    """Whether ``server`` kept up in this run (see the module docstring)."""
    kinds = [t for t, s, _ in KINDS if s == server] if server != "proxy" else list(row["by_type"])
    complete = all(row["by_type"][t]["delivered"] >= row["by_type"][t]["sent"] for t in kinds)
    on_acked_path = server == "proxy" or any(s == server and a for _, s, a in KINDS)
    return (
        complete
        and row["drops"][server] == 0
        and row["drops"]["hosts"] == 0
        and row["cpu"][server] < CPU_LIMIT
        and not (on_acked_path and row["latency_growing"])
    )


def bench(args: argparse.Namespace) -> Dict:
    from cctools.bench.cload import build_c_load

    results: Dict[str, Any] = {"modes": {}}
    with tempfile.TemporaryDirectory(prefix="cc-bench-fleet-") as tmp:
        load = build_c_load(tmp)
        if load is None:
            raise SystemExit("cc-bench fleet: needs the C load (a C compiler and libzmq)")
        keystore = None
        if "signed" in args.modes:
            from cctools.bench.keys import make_keystore

            keystore = make_keystore(os.path.join(tmp, "keys"), SIGNERS)
        for mode in args.modes:
            rows = []
            for hosts in args.hosts:
                row = run_fleet(load, hosts, args.seconds, keystore if mode == "signed" else None,
                                args.idle, args.proxy == "c")  # fmt: skip
                rows.append(row)
                if not args.json:
                    print_row(mode, row)
            servers = ["proxy", *SERVICES]
            largest = {
                s: max([r["hosts"] for r in rows if sustains(s, r)], default=0) for s in servers
            }
            results["modes"][mode] = {"runs": rows, "sustained_hosts": largest}
            if not args.json:
                print("%s: largest host count each server sustained (of %s): %s" % (
                    mode, ",".join(map(str, args.hosts)),
                    ", ".join("%s %d" % kv for kv in largest.items())))  # fmt: skip
    if "unsigned" in results["modes"] and "signed" in results["modes"]:
        ratios = {}
        for u, s in zip(results["modes"]["unsigned"]["runs"], results["modes"]["signed"]["runs"]):
            ratios[u["hosts"]] = {
                name: (s["cpu"][name] / u["cpu"][name] if u["cpu"][name] else 0.0)
                for name in u["cpu"]
            }
        results["signed_cpu_vs_unsigned"] = ratios
        if not args.json:
            for hosts, r in ratios.items():
                print("signed/unsigned CPU at %d hosts: %s" % (
                    hosts, ", ".join("%s %.2f" % kv for kv in r.items())))  # fmt: skip
    return results


def print_row(mode: str, row: Dict) -> None:
    print(
        "%-8s %5d hosts: sent %d, delivered %d, drops %s, errors %d, latency p50 %.1f ms "
        "p99 %.1f ms (first third %.1f, last %.1f), load behind by %.0f ms at most, CPU/s %s"
        % (mode, row["hosts"], row["sent"], row["delivered"],
           sum(row["drops"].values()), row["errors"], row["p50_ms"], row["p99_ms"],
           row["p99_first_ms"], row["p99_last_ms"], row["load_max_lag_ms"],
           ", ".join("%s %.2f" % kv for kv in row["cpu"].items())),
        flush=True,
    )  # fmt: skip
    refused = row["tail_refused"]
    if any(refused.values()):
        print("  pub.logtail refused busy %(busy)d, gap %(gap)d (not drops): sent again %(resent)d,"
              " still refused at the end %(not_resent)d" % refused)
    print(
        "  hosts per core (steady %.1f s): %s; the load used %.2f of a core"
        % (row["window_s"],
           ", ".join("%s %s" % (name, "%.0f" % n if n else "-")
                     for name, n in row["hosts_per_core"].items()),
           row["load_cpu"]),
        flush=True,
    )  # fmt: skip
    print("  of each server's CPU, in libzmq's I/O threads: %s" % ", ".join(
        "%s %.2f" % kv for kv in row["cpu_zmq_io"].items()), flush=True)  # fmt: skip
    if row["first_error"]:
        print("  first error reply: %s" % row["first_error"])


def bench_ha(args: argparse.Namespace) -> None:
    """``--ha``: see :mod:`cctools.bench.scenarios.fleet_ha`."""
    from cctools.bench.cload import build_c_load
    from cctools.bench.scenarios import fleet_ha

    with tempfile.TemporaryDirectory(prefix="cc-bench-fleet-") as tmp:
        load = build_c_load(tmp)
        if load is None:
            raise SystemExit("cc-bench fleet: needs the C load (a C compiler and libzmq)")
        result = fleet_ha.bench(load, args.hosts, args.seconds, args.idle, not args.json)
    if args.json:
        print(json.dumps(result, indent=1))


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(prog="cc-bench fleet", description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", default="100,1000,5000", help="comma list of host counts")
    p.add_argument("--seconds", type=int, default=10, help="seconds of traffic per run")
    p.add_argument("--modes", default="unsigned,signed", help="unsigned, signed or both")
    p.add_argument(
        "--idle",
        type=float,
        default=10.0,
        help="give up waiting for deliveries after this many seconds without any",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON only")
    p.add_argument(
        "--proxy",
        choices=("cc", "c"),
        default="cc",
        help="what forwards the hosts' messages: cc-server, or the bar: a C router on libzmq",
    )
    p.add_argument(
        "--ha",
        action="store_true",
        help="two hubs and two shards of each writer, steady and with a hub killed",
    )
    args = p.parse_args(argv)
    args.hosts = [int(h) for h in args.hosts.split(",")]
    if args.ha:
        return bench_ha(args)
    args.modes = [m for m in args.modes.split(",") if m]
    if set(args.modes) - {"unsigned", "signed"}:
        p.error("--modes: unsigned, signed")
    result = bench(args)
    if args.json:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
