"""The Python sender and sink of the forwarding scenarios (``--load python``).

``benchload.c`` is the same pair in C; this one is slower than ``zmq.proxy``,
so it is the fallback where no C compiler is there.
"""

import json
import time

import zmq

#: the sender's SNDHWM: it blocks there rather than drop
SENDER_HWM = 1000


def make_body(msgtype: str, size: int) -> bytes:
    """A JSON body of exactly ``size`` bytes (at least the fixed fields) for ``msgtype``."""
    fields = {"req": msgtype, "time": 1700000000.0, "hostname": "bench", "log_msg": ""}
    pad = size - len(json.dumps(fields))
    fields["log_msg"] = "x" * max(0, pad)
    return json.dumps(fields).encode()


def sink(expected: int, idle: float) -> None:
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


def send(url: str, count: int, msgtype: str, size: int) -> None:
    """Send ``count`` messages of ``size`` body bytes as fast as the HWM lets through."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.SNDHWM, SENDER_HWM)
    sock.connect(url)
    time.sleep(0.3)  # connected before the sink's clock starts
    frames = [b"", msgtype.encode(), make_body(msgtype, size), b""]
    raw_send = zmq.backend.Socket.send  # the backend's own, without pyzmq's wrapper
    last = len(frames) - 1
    flags = [zmq.SNDMORE] * last + [0]
    for _ in range(count):
        for i in range(last + 1):
            raw_send(sock, frames[i], flags[i])
    sock.close(linger=-1)
    ctx.term()
