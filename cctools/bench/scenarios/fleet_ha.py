"""``cc-bench fleet --ha``: the fleet with no single point of failure, and a hub killed.

Two hubs; each shards ``log``, ``pub.logtail``, ``pub.stats`` and
``pub.infofile`` over two writers of each kind (``shards``, rendezvous by
host) and sends ``task`` to the taskrouter.  The hosts are split in two
halves, each the C load of :mod:`~cctools.bench.scenarios.fleet` sending its
usual mix to an edge cc that stands for that half's local ccs: edge 1 names
``remote-cc = hub1, hub2``, edge 2 the other way round (``ping-period`` 1).
A real task runner behind edge 1 gets a task from a client at the taskrouter
every half second.

Two runs: a steady one, and one where hub 1 is killed (SIGKILL) in the middle.
Reported per run: each process's CPU as a share of one core and the hosts it
carried per core of it; every kind delivered against sent; every log copy
checked byte for byte (each host's file whole, on exactly one tailwriter);
every task answered (``finished`` or ``failed``) and none run twice; the
time from the kill to edge 1's failover; and, on a hub of its own, the CPU
it spends answering pings, per 1,000 hosts pinging once a second.
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Dict, List, Optional

import zmq

from cctools.bench.scenarios.fleet import (
    KINDS,
    SERVICES,
    TAIL_BLOB,
    Server,
    dropped,
    render,
    tail_refused,
    wait_delivered,
    write_schedule,
)

#: the writers that get two shards (the taskrouter stays one)
WRITERS = [name for name in SERVICES if name != "taskrouter"]
#: pings a second sent to a hub to price watching links
PINGS_PER_SECOND = 500
RUNNER = "ha-runner"


def hub_config(writer_shards: Dict[str, List[str]], taskrouter: str) -> str:
    routes = ["[routes]", "echo = h:echo", "task = h:tasks"]
    sections = [
        "[h:echo]\nhandler = echo",
        "[h:tasks]\nhandler = proxy\nremote-cc = %s" % taskrouter,
    ]
    for name in WRITERS:
        routes.append("%s = h:%s" % (SERVICES[name][0], name))
        sections.append(
            "[h:%s]\nhandler = proxy\nshards = %s\nzmq_hwm = 100000"
            % (name, ", ".join(writer_shards[name]))
        )
    return "\n".join(routes) + "\n\n" + "\n\n".join(sections) + "\n"


def edge_config(hubs: List[str], with_runner: bool) -> str:
    text = (
        "[routes]\nlog = h:hubs\npub = h:hubs\ntask = h:hubs\n\n"
        "[h:hubs]\nhandler = proxy\nremote-cc = %s\nzmq_hwm = 100000\nping-period = 1\n"
        % ", ".join(hubs)
    )
    if with_runner:
        text += "\n[d:taskrunner]\nlocal-id = %s\nreg-period = 300\n\n[cc.task.sample]\n" % RUNNER
    return text


class Topology:
    """Every process of an HA run."""

    def __init__(self, tmp: str) -> None:
        self.tmp = tmp
        self.servers: Dict[str, Server] = {}
        self.runner: Optional[subprocess.Popen] = None
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        shards: Dict[str, List[str]] = {}
        for name in WRITERS:
            prefix, handler = SERVICES[name]
            for n in (1, 2):
                sname = "%s%d" % (name, n)
                body = handler.format(dir=os.path.join(self.tmp, sname))
                self.add(sname, "end-service",
                         "[routes]\n%s = h:w\necho = h:echo\n\n[h:w]\n%s\n"
                         "[h:echo]\nhandler = echo\n" % (prefix, body))  # fmt: skip
                shards.setdefault(name, []).append(self.servers[sname].endpoint)
        self.add("taskrouter", "end-service",
                 "[routes]\ntask = h:t\n\n[h:t]\nhandler = taskrouter\ntask-ack-timeout = 5\n"
                 "reply-timeout = 30\nmaint-period = 1\n")  # fmt: skip
        for hub in ("hub1", "hub2"):
            self.add(hub, "proxy", hub_config(shards, self.servers["taskrouter"].endpoint))
        hubs = [self.servers["hub1"].endpoint, self.servers["hub2"].endpoint]
        self.add("edge1", "local", edge_config(hubs, True))
        self.add("edge2", "local", edge_config(hubs[::-1], False))
        ini = os.path.join(self.tmp, "edge1.ini")
        with open(ini, encoding="utf8") as f:
            pinned = f.read().replace("tcp://127.0.0.1:*", self.servers["edge1"].endpoint, 1)
        with open(ini, "w", encoding="utf8") as f:
            f.write(pinned)
        self.runner = subprocess.Popen(
            [sys.executable, "-m", "cc.daemon", "cc.daemon.taskrunner", ini, "d:taskrunner"],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.tmp, "runner.log"), "ab"),
        )

    def add(self, name: str, role: str, body: str) -> None:
        self.servers[name] = Server(self.tmp, name, role, body)

    def stop(self) -> None:
        if self.runner is not None and self.runner.poll() is None:
            self.runner.terminate()
            self.runner.wait(30)
        for server in self.servers.values():
            server.stop()


class TaskClient:
    """Sends a task to the runner every half second; keeps every reply per task."""

    def __init__(self, ctx: zmq.Context, taskrouter: str) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.connect(taskrouter)
        self.replies: Dict[str, List[str]] = {}
        self.next_at = 0.0

    def tick(self) -> None:
        from cc.message import CCMessage

        while self.sock.poll(0):
            msg = CCMessage(self.sock.recv_multipart())
            if msg.type.startswith("task.reply."):
                self.replies.setdefault(msg.type[11:], []).append(msg.get_body().get("status"))
        if time.monotonic() >= self.next_at:
            self.next_at = time.monotonic() + 0.5
            uid = uuid.uuid4().hex
            self.replies[uid] = []
            body = {"task_host": RUNNER, "task_handler": "cc.task.sample", "task_id": uid,
                    "delay": 0}  # fmt: skip
            self.sock.send_multipart(CCMessage.build("task.send." + uid, body, route=[b"Q"]).frames)

    def summary(self) -> Dict[str, int]:
        finals = {uid: [s for s in r if s in ("finished", "failed", "stopped")]
                  for uid, r in self.replies.items()}  # fmt: skip
        return {
            "sent": len(finals),
            "finished": sum(1 for f in finals.values() if f == ["finished"]),
            "failed": sum(1 for f in finals.values() if f == ["failed"]),
            "unanswered": sum(1 for f in finals.values() if not f),
            "answered_twice": sum(1 for f in finals.values() if len(f) > 1),
        }


def run(load: str, hosts: int, seconds: int, kill: bool, idle: float) -> Dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="cc-bench-ha-")
    topo: Optional[Topology] = None
    ctx = zmq.Context()
    try:
        half = hosts // 2
        parts = [(half, 0), (hosts - half, half)]
        schedules = []
        for n, (count, first) in enumerate(parts):
            path = os.path.join(tmp, "schedule%d" % n)
            write_schedule(path, count, render(count, seconds, None, first))
            schedules.append(path)
        topo = Topology(tmp)
        servers = topo.servers
        tasks = TaskClient(ctx, servers["taskrouter"].endpoint)
        time.sleep(2)  # the runner registered
        loads = [
            subprocess.Popen([load, "fleet", servers[edge].endpoint, path, str(int(idle * 1000))],
                             stdout=subprocess.PIPE, text=True)
            for edge, path in zip(("edge1", "edge2"), schedules)
        ]  # fmt: skip
        for proc in loads:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "start":
                raise SystemExit("cc-bench fleet --ha: the load did not start")
        cpu0 = {name: s.cpu_seconds() for name, s in servers.items()}
        t0 = time.monotonic()
        killed_at = None
        hub1_alive, hub1_cpu = 0.0, 0.0
        while time.monotonic() - t0 < seconds:
            tasks.tick()
            if kill and killed_at is None and time.monotonic() - t0 >= seconds / 2:
                hub1_alive = time.monotonic() - t0
                hub1_cpu = servers["hub1"].cpu_seconds()
                servers["hub1"].proc.send_signal(signal.SIGKILL)
                killed_at = time.time()
            time.sleep(0.05)
        span = time.monotonic() - t0  # the schedules' length: CPU over the traffic only
        cpu = {}
        for name, server in servers.items():
            if name == "hub1" and killed_at is not None:
                cpu[name] = (hub1_cpu - cpu0[name]) / hub1_alive
            else:
                cpu[name] = (server.cpu_seconds() - cpu0[name]) / span
        results = []
        for proc in loads:
            assert proc.stdout is not None
            proc.stdout.readline()  # "sent"
            results.append(json.loads(proc.stdout.readline()))
            proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and tasks.summary()["unanswered"]:
            tasks.tick()
            time.sleep(0.1)
        sent = {t: sum(r["sent"][i] for r in results) for i, (t, _, _) in enumerate(KINDS)}
        live = {n: s for n, s in servers.items() if n != "hub1" or killed_at is None}
        counts, totals = wait_delivered_sharded(live, sent, idle)
        row: Dict[str, Any] = {
            "hosts": hosts,
            "seconds": seconds,
            "hub_killed": kill,
            "by_type": {t: {"sent": n, "delivered": counts[t]} for t, n in sent.items()},
            "drops": {n: dropped(t) for n, t in totals.items()},
            "cpu": cpu,
            "tasks": tasks.summary(),
            "tail_copies": check_tails(tmp, hosts, seconds),
            "p99_ms": max(r["p99_ms"] for r in results),
            "tail_refused": tail_refused(results),
        }
        if killed_at is not None:
            row["failover_s"] = failover_seconds(os.path.join(tmp, "edge1.log"), killed_at)
        return row
    finally:
        ctx.destroy(0)
        if topo is not None:
            topo.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def wait_delivered_sharded(servers: Dict[str, Server], sent: Dict[str, int], idle: float):
    """:func:`fleet.wait_delivered` over shard pairs: each kind's count summed over its shards."""
    class Pair:
        def __init__(self, name: str) -> None:
            self.members = [servers["%s%d" % (name, n)] for n in (1, 2)]

        def totals(self) -> Dict[str, float]:
            out: Dict[str, float] = {}
            for member in self.members:
                for k, v in member.totals().items():
                    out[k] = out.get(k, 0) + v
            return out

    merged: Dict[str, Any] = {name: Pair(name) for name in WRITERS}
    merged["taskrouter"] = servers["taskrouter"]
    counts, _ = wait_delivered(merged, sent, idle)
    return counts, {name: server.totals() for name, server in servers.items()}


def check_tails(tmp: str, hosts: int, seconds: int) -> Dict[str, int]:
    """Each host's log copy: whole (``seconds`` fragments, byte for byte) on one tailwriter."""
    where: Dict[str, List[str]] = {}
    whole = 0
    shards = ("tailwriter1", "tailwriter2")
    for shard in shards:
        tails = os.path.join(tmp, shard, "tails")
        for name in os.listdir(tails) if os.path.isdir(tails) else ():
            if name.startswith("."):
                continue
            where.setdefault(name.split("--")[0], []).append(shard)
            with open(os.path.join(tails, name), "rb") as f:
                whole += f.read() == TAIL_BLOB * seconds
    per_shard = {s: sum(1 for w in where.values() if s in w) for s in shards}
    return dict(
        hosts=hosts,
        byte_exact=whole,
        on_two_shards=sum(1 for w in where.values() if len(set(w)) > 1),
        # a host's copy in two files of one writer (tailwriter's state forgot the first)
        in_two_files=sum(1 for w in where.values() if len(w) > len(set(w))),
        **per_shard,
    )


def failover_seconds(logfile: str, killed_at: float) -> Optional[float]:
    """Seconds from the kill to the edge's ``failing over`` line."""
    with open(logfile, encoding="utf8", errors="replace") as f:
        m = re.search(r"^(\S+ \S+) \d+ WARNING .* failing over to", f.read(), re.M)
    if m is None:
        return None
    stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp() - killed_at


def ping_cost(seconds: float = 10.0) -> Dict[str, float]:
    """A hub's CPU answering :data:`PINGS_PER_SECOND` echo requests a second, and idle."""
    from cc.message import CCMessage

    tmp = tempfile.mkdtemp(prefix="cc-bench-ha-ping-")
    hub = Server(tmp, "hub", "proxy", "[routes]\necho = h:echo\n\n[h:echo]\nhandler = echo\n")
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.connect(hub.endpoint)
        time.sleep(1)
        c0, t0 = hub.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        idle = (hub.cpu_seconds() - c0) / (time.monotonic() - t0)
        c0, t0 = hub.cpu_seconds(), time.monotonic()
        sent = 0
        while time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * PINGS_PER_SECOND)
            while sent < due:
                sent += 1
                msg = CCMessage.build("echo.request", {"target": "hub"}, route=[b"P%d" % sent])
                sock.send_multipart(msg.frames)
            while sock.poll(0):
                sock.recv_multipart()
            time.sleep(0.01)
        busy = (hub.cpu_seconds() - c0) / (time.monotonic() - t0)
        return {
            "idle_cpu": idle,
            "pings_per_second": sent / seconds,
            "cpu_per_1000_hosts": (busy - idle) * 1000 / (sent / seconds),
        }
    finally:
        ctx.destroy(0)
        hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def bench(load: str, hosts: List[int], seconds: int, idle: float, show: bool) -> Dict[str, Any]:
    """Per host count a steady run and one with hub 1 killed; the price of pings
    (printed as they come with ``show``)."""
    runs = []
    for count in hosts:
        for kill in (False, True):
            row = run(load, count, seconds, kill, idle)
            runs.append(row)
            if show:
                print_row(row)
    cost = ping_cost()
    if show:
        print("a hub answering %.0f pings/s: %.3f of a core per 1000 hosts pinging each second "
              "(idle %.3f)" % (cost["pings_per_second"], cost["cpu_per_1000_hosts"],
                               cost["idle_cpu"]), flush=True)  # fmt: skip
    return {"runs": runs, "ping_cost": cost}


def print_row(row: Dict[str, Any]) -> None:
    per_core = {
        n: (row["hosts"] / (2 if n.startswith(("hub", "edge")) or n[-1].isdigit() else 1)) / c
        for n, c in row["cpu"].items()
        if c > 0
    }
    lost = {t: v["sent"] - v["delivered"] for t, v in row["by_type"].items()
            if v["delivered"] < v["sent"]}  # fmt: skip
    print(
        "%5d hosts%s: lost %s, tail copies %s, pub.logtail refused and sent again %s, tasks %s%s"
        "\n  CPU/s %s\n  hosts per core %s"
        % (row["hosts"], ", hub1 killed" if row["hub_killed"] else "", lost or "none",
           row["tail_copies"], row["tail_refused"], row["tasks"],
           ", failover %.1f s" % row["failover_s"] if row.get("failover_s") else "",
           ", ".join("%s %.2f" % kv for kv in sorted(row["cpu"].items())),
           ", ".join("%s %.0f" % kv for kv in sorted(per_core.items()))),
        flush=True,
    )  # fmt: skip
