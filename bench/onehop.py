"""One-hop forwarding: cc-server's proxy against a stock ZMQStream forwarder.

    python bench/onehop.py [--messages N] [--runs R] [--senders S]

Each run starts a sink (ROUTER, counts what arrives), the forwarder under
test, and S sender processes that push N ``log.info`` messages (212-byte
body, 4 frames after the route) as fast as the forwarder takes them.
Throughput is what the sink received per second between its first and last
message; anything not received is reported as lost.  Forwarders alternate
run by run; the median of the runs is reported.  ``cc-bench`` (the
performance issue) supersedes this script.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import zmq


def make_body(size: int = 212) -> bytes:
    """A log.info body of exactly ``size`` bytes, the figure the performance issue uses."""
    fields = {
        "req": "log.info",
        "time": 1700000000.0,
        "hostname": "bench-host",
        "log_level": "INFO",
        "service_type": "bench",
        "job_name": "bench-job",
        "log_pid": 4242,
        "log_msg": "",
        "log_time": 1700000000.0,
    }
    fields["log_msg"] = "x" * (size - len(json.dumps(fields)))
    return json.dumps(fields).encode()


BODY = make_body()
#: the proxy's zmq_hwm: a burst larger than this is dropped (and counted) by design,
#: while the stock forwarder queues without bound
HWM = 10000


def sink(n_expected: int, idle_timeout: float = 3.0) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.RCVHWM, 100000)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(port, flush=True)
    received = 0
    first = last = 0.0
    recv, get = sock.recv, sock.get
    while received < n_expected and sock.poll(int(idle_timeout * 1000)):
        while True:
            try:
                recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            while get(zmq.RCVMORE):
                recv(zmq.NOBLOCK)
            received += 1
            last = time.perf_counter()
            if received == 1:
                first = last
    rate = (received - 1) / (last - first) if received > 1 and last > first else 0.0
    print(json.dumps({"received": received, "rate": rate}), flush=True)


def sender(url: str, count: int) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, 1000)
    sock.connect(url)
    time.sleep(0.3)  # let the connection come up before the clock starts at the sink
    send = sock.send
    more = zmq.SNDMORE
    for _ in range(count):
        send(b"", more)
        send(b"log.info", more)
        send(BODY, more)
        send(b"")
    sock.close(linger=-1)
    ctx.term()


def stock_forwarder(sink_url: str) -> None:
    """What a plain pyzmq/tornado forwarder looks like: ZMQStream, one message per callback."""
    from tornado.ioloop import IOLoop
    from zmq.eventloop.zmqstream import ZMQStream

    ctx = zmq.Context()
    front = ctx.socket(zmq.ROUTER)
    port = front.bind_to_random_port("tcp://127.0.0.1")
    back = ctx.socket(zmq.DEALER)
    back.connect(sink_url)
    back_stream = ZMQStream(back)
    ZMQStream(front).on_recv(back_stream.send_multipart)
    print(port, flush=True)
    IOLoop.current().start()


def start(args, **kw):
    return subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, **kw
    )


def run_once(kind: str, n_senders: int, per_sender: int, tmpdir: str) -> dict:
    total = n_senders * per_sender
    sink_proc = start(["--role", "sink", "--messages", str(total)])
    sink_url = "tcp://127.0.0.1:%s" % sink_proc.stdout.readline().strip()
    if kind == "stock":
        fwd = start(["--role", "stock", "--sink", sink_url])
        front = "tcp://127.0.0.1:%s" % fwd.stdout.readline().strip()
    else:
        ini = os.path.join(tmpdir, "onehop.ini")
        logfile = os.path.join(tmpdir, "onehop-%d.log" % time.monotonic_ns())
        with open(ini, "w") as f:
            f.write(
                "[ccserver]\ncc-socket = tcp://127.0.0.1:*\ncc-role = local\ncc-stats = 1\n"
                "logfile = %s\n\n[routes]\nlog = h:proxy\n\n[h:proxy]\nhandler = proxy\n"
                "remote-cc = %s\nzmq_hwm = %d\n" % (logfile, sink_url, HWM)
            )
        fwd = subprocess.Popen([sys.executable, "-m", "cc.server", ini], stderr=subprocess.DEVNULL)
        front = None
        deadline = time.monotonic() + 10
        while front is None and time.monotonic() < deadline:
            time.sleep(0.05)
            front = _endpoint(logfile)
    senders = [
        start(["--role", "send", "--url", front, "--messages", str(per_sender)])
        for _ in range(n_senders)
    ]
    for proc in senders:
        proc.wait()
    result = json.loads(sink_proc.stdout.readline())
    sink_proc.wait()
    fwd.terminate()
    fwd.wait()
    result["lost"] = total - result["received"]
    return result


def _endpoint(logfile: str):
    try:
        with open(logfile) as f:
            for line in f:
                if "listening on" in line:
                    return line.split("listening on ")[1].split()[0]
    except FileNotFoundError:
        pass
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--role", default="bench", choices=["bench", "sink", "send", "stock"])
    p.add_argument("--messages", type=int, default=200000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--senders", type=int, default=2)
    p.add_argument("--url")
    p.add_argument("--sink")
    args = p.parse_args()
    if args.role == "sink":
        return sink(args.messages)
    if args.role == "send":
        return sender(args.url, args.messages)
    if args.role == "stock":
        return stock_forwarder(args.sink)
    per_sender = args.messages // args.senders
    rates = {"stock": [], "cc": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        for run in range(args.runs):
            for kind in ("stock", "cc"):
                res = run_once(kind, args.senders, per_sender, tmpdir)
                rates[kind].append(res["rate"])
                print(
                    "run %d %-5s %8.0f msg/s  lost %d" % (run + 1, kind, res["rate"], res["lost"]),
                    flush=True,
                )
    stock, ccs = statistics.median(rates["stock"]), statistics.median(rates["cc"])
    print(
        "median: stock ZMQStream %.0f msg/s, cc-server %.0f msg/s, ratio %.2f"
        % (stock, ccs, ccs / stock if stock else float("nan"))
    )


if __name__ == "__main__":
    main()
