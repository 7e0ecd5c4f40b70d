"""Database calls through cc (client -> cc-server -> dbhandler) against direct psycopg2.

    cc-bench dbcalls [--calls N] [--runs R] [--threads 4,10] [--sleep-ms MS] [--dsn DSN]

Each run calls ``bench_add(a, b)`` (a one-line SQL function, ``return = one``;
with ``--sleep-ms`` it first sleeps that long in the server, a stand-in for a
function that does real work) N times: directly, from T threads with one
psycopg2 connection each; and through a cc-server whose dbhandler has
``worker-threads`` = T, from one DEALER client keeping 2*T calls in flight.
Every reply is checked.  Without ``--dsn`` a throwaway cluster is started
with cctools.pgcluster.  The two ways alternate run by run; the median
calls/s of the runs is reported.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2
import zmq

from cctools import pgcluster
from cctools.bench.scenarios import REPO


SETUP_SQL = """
create or replace function public.bench_add(a int, b int) returns int
    language sql as 'select a + b';
create or replace function public.bench_add_slow(a int, b int) returns int
    language sql as 'select pg_sleep(%f); select a + b';
"""
FUNCTION = "bench_add"


def direct(dsn: str, threads: int, calls: int) -> float:
    """calls/s of ``calls`` calls spread over ``threads`` threads, a connection each."""
    query = 'select * from "public".%s(%%s, %%s)' % FUNCTION
    conns = []
    for _ in range(threads):
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        conns.append(conn)
    per_thread = calls // threads
    errors = []

    def work(conn: "psycopg2.extensions.connection") -> None:
        cur = conn.cursor()
        for i in range(per_thread):
            cur.execute(query, (i, 1))
            if cur.fetchone() != (i + 1,):
                errors.append(i)

    workers = [threading.Thread(target=work, args=(c,)) for c in conns]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    assert not errors, "wrong results: %d" % len(errors)
    return per_thread * threads / elapsed


class CCServer:
    """A cc-server with a dbhandler of ``threads`` workers."""

    def __init__(self, dsn: str, threads: int) -> None:
        self.tmp = tempfile.mkdtemp(prefix="ccbench-")
        ini = os.path.join(self.tmp, "db.ini")
        with open(ini, "w", encoding="utf8") as f:
            f.write(
                "[ccserver]\njob_name = bench\nlogfile = %s/db.log\npidfile = %s/db.pid\n"
                "cc-socket = tcp://127.0.0.1:*\ncc-role = remote\nstats-period = 30\n"
                "[routes]\ndb = h:db\n[h:db]\nhandler = dbhandler\ndb = %s\n"
                "allowed-functions = *\nworker-threads = %d\n" % (self.tmp, self.tmp, dsn, threads)
            )
        env = dict(os.environ, PYTHONPATH=REPO)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cc.server", ini],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        self.endpoint = ""
        while not self.endpoint:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("cc-server did not start")
            time.sleep(0.05)
            try:
                with open(os.path.join(self.tmp, "db.log"), encoding="utf8") as f:
                    m = re.search(r"listening on (\S+)", f.read())
                self.endpoint = m.group(1) if m else ""
            except FileNotFoundError:
                pass

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        subprocess.run(["rm", "-rf", self.tmp], check=False)


def through_cc(endpoint: str, inflight: int, calls: int) -> float:
    """calls/s of ``calls`` calls from one DEALER keeping ``inflight`` in flight."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)

    def frames(i: int) -> list:
        body = {"req": "db", "function": FUNCTION, "params": [i, 1], "return": "one"}
        return [b"%d" % i, b"", b"db", json.dumps(body).encode(), b""]

    requests = [frames(i) for i in range(calls)]
    # one call first: connections are opened lazily, the first one is not measured
    sock.send_multipart(frames(0))
    sock.recv_multipart()
    sent = received = 0
    started = time.perf_counter()
    while sent < min(inflight, calls):
        sock.send_multipart(requests[sent])
        sent += 1
    while received < calls:
        if not sock.poll(10000):
            raise RuntimeError("no reply within 10 s (%d of %d)" % (received, calls))
        reply = sock.recv_multipart()
        i = int(reply[0])
        body = json.loads(reply[3])
        if body.get("data") != [i + 1]:
            raise RuntimeError("wrong reply for %d: %r" % (i, body))
        received += 1
        if sent < calls:
            sock.send_multipart(requests[sent])
            sent += 1
    elapsed = time.perf_counter() - started
    sock.close(0)
    ctx.term()
    return calls / elapsed


def main(argv: "list[str] | None" = None) -> None:
    ap = argparse.ArgumentParser(prog="cc-bench dbcalls", description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", default="4,10")
    ap.add_argument("--sleep-ms", type=float, default=0.0)
    ap.add_argument(
        "--inflight",
        type=int,
        default=0,
        help="calls the cc client keeps in flight (default: 2 per thread)",
    )
    ap.add_argument("--dsn", help="use this database instead of a throwaway cluster")
    args = ap.parse_args(argv)
    global FUNCTION
    if args.sleep_ms:
        FUNCTION = "bench_add_slow"

    cluster = pgcluster.PgCluster("ccbench", dsn=args.dsn).create()
    try:
        dsn = cluster.dsn()
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        conn.cursor().execute(SETUP_SQL % (args.sleep_ms / 1000.0))
        conn.close()
        print("%s, %d calls, median of %d runs" % (FUNCTION, args.calls, args.runs))
        print("%-8s %12s %12s %8s" % ("threads", "direct/s", "cc/s", "cc/direct"))
        for threads in [int(t) for t in args.threads.split(",")]:
            server = CCServer(dsn, threads)
            try:
                d_runs, c_runs = [], []
                for _ in range(args.runs):
                    d_runs.append(direct(dsn, threads, args.calls))
                    inflight = args.inflight or 2 * threads
                    c_runs.append(through_cc(server.endpoint, inflight, args.calls))
            finally:
                server.stop()
            d, c = statistics.median(d_runs), statistics.median(c_runs)
            print("%-8d %12.0f %12.0f %7.0f%%" % (threads, d, c, 100 * c / d), flush=True)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
