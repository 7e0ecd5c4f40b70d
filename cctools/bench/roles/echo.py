"""Round trips: the client that times them, and the responder behind the zmq.proxy baseline."""

import json
import time
from typing import List

import zmq

from cctools.bench.roles.load import make_body

#: round trips before the timed ones
WARM_UP = 100


def client(url: str, count: int, size: int) -> None:
    """Round trips one at a time; print latency percentiles in microseconds."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(url)
    body = make_body("echo.request", size)
    times: List[float] = []
    for n in range(count + WARM_UP):
        qid = b"Q%d" % n
        started = time.perf_counter()
        sock.send_multipart([qid, b"", b"echo.request", body, b""])
        if not sock.poll(5000):
            break
        sock.recv_multipart()
        if n >= WARM_UP:
            times.append((time.perf_counter() - started) * 1e6)
    times.sort()
    result = {"count": len(times)}
    for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
        result[name] = times[min(len(times) - 1, int(q * len(times)))] if times else 0.0
    print(json.dumps(result), flush=True)


def responder() -> None:
    """The far end of the zmq.proxy echo baseline: reflect every message."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    print(sock.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    while True:
        sock.send_multipart(sock.recv_multipart())
