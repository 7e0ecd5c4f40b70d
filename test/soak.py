"""Soak: mixed traffic through local -> proxy -> end-service for a long while.

``make soak`` (30 minutes; ``SOAK_MINUTES`` shortens it, ``SOAK_SAMPLE``
sets the seconds between samples, default 60).  Every sample records RSS
and open file descriptors of each server; the summary at the end prints
them with the traffic sent, answered and counted as dropped or invalid.
A second client keeps ``SOAK_INFLIGHT`` (default 200) echo requests in flight
through the chain, reading replies as they come; each sample shows its
outstanding replies and, per server, the replies waiting for full peers.
Exit code 1 if a server died, logged a traceback, counted a handler crash,
stopped answering (the pipelining client included: no reply for
``STALL_SECONDS``), or grew beyond its warmed-up size: the last sample over
the largest of the first half (the very first is taken before any traffic,
and files and worker threads open up to their caps), by more than
``SOAK_RSS_MB`` (default 20) of RSS or 20 fds.
"""

import os
import random
import shutil
import sys
import tempfile
import time
from typing import Dict, Set

import zmq
from harness import Pipeline, ServerProcess, ccserver_section
from test_fuzz import random_frames, typed_message

from cc.message import CCMessage

END = """
[routes]
echo = h:echo
log = h:logwriter
pub.infofile = h:info
pub.logtail = h:tail
pub.stats = h:stats
pub.state = h:stats
drop = h:disposer

[h:echo]
handler = echo

[h:logwriter]
handler = logwriter
dstdir = {tmp}/logs
# the fuzz messages name new files all the time: open ones are capped at 2 x 10
max-open-files = 10

[h:info]
handler = infowriter
dstdir = {tmp}/info

[h:tail]
handler = tailwriter
dstdir = {tmp}/tail

[h:stats]
handler = statswriter
dstdir = {tmp}/stats

[h:disposer]
handler = disposer
"""

FORWARD = """
[routes]
echo = h:proxy
log = h:proxy
pub = h:proxy
drop = h:proxy

[h:proxy]
handler = proxy
remote-cc = {remote}
ping = yes
"""


#: seconds without a reply to the pipelining client that count as a stalled link
STALL_SECONDS = 30


def sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def growth(values):
    """The last sample over the largest of the first half, the pre-traffic first left out."""
    base = values[1 : len(values) // 2 + 1] or values[:1]
    return values[-1] - max(base)


def start(tmp, name, ini, role="remote", **subs):
    text = ccserver_section(name, role=role).replace("stats-period = 0.2", "stats-period = 5")
    text = (text + ini).replace("{tmp}", tmp)
    for key, value in subs.items():
        text = text.replace("{%s}" % key, value)
    return ServerProcess(tmp, name, text).start()


class Traffic:
    """One client on the local cc: log records, echo queries, infofiles, acked logtail, garbage."""

    def __init__(self, sock, rng):
        self.sock = sock
        self.rng = rng
        self.sent = self.answered = self.queries = self.fpos = 0
        self.ino = rng.randrange(1 << 30)
        #: logtail fragments not acknowledged yet, by fpos, and those refused (busy, gap)
        self.tail: Dict[int, bytes] = {}
        self.refused: Set[int] = set()
        self.resent = 0

    def tail_frames(self, fpos, chunk):
        body = {"hostname": "h", "filename": "/soak.log", "comp": "", "st_dev": 1, "origin": 0}
        body.update(st_ino=self.ino, fpos=fpos, ack=True, data="")
        route = [b"T%d" % fpos]
        return CCMessage.build("pub.logtail", body, route=route, blob=chunk).frames

    def resend_refused(self):
        """As logtail does: a refused fragment goes again, in file order (those refused as
        gaps behind a busy one after it)."""
        for fpos in sorted(self.refused):
            self.sock.send_multipart(self.tail_frames(fpos, self.tail[fpos]))
            self.resent += 1
        self.refused.clear()

    def answer(self, frames):
        reply = CCMessage(frames)
        if not reply.route or not reply.route[0].startswith(b"T"):
            return
        fpos = int(reply.route[0][1:])
        if reply.type != "error":
            self.tail.pop(fpos, None)
        elif reply.get_body().get("code") in ("busy", "gap") and fpos in self.tail:
            self.refused.add(fpos)

    def tick(self):
        rng = self.rng
        self.resend_refused()
        for _ in range(50):
            kind = rng.random()
            if kind < 0.4:
                body = {"log_level": "INFO", "job_name": "soak", "hostname": "h", "log_msg": "m"}
                frames = CCMessage.build("log.info", dict(body, log_time=time.time())).frames
            elif kind < 0.5:
                self.queries += 1
                body = {"target": "soak"}
                frames = CCMessage.build("echo.request", body, route=[b"E"]).frames
            elif kind < 0.6:
                body = {"hostname": "h", "filename": "f%d" % rng.randrange(50), "comp": ""}
                body.update(mtime=time.time(), data="")
                frames = CCMessage.build("pub.infofile", body, blob=os.urandom(500)).frames
            elif kind < 0.7:
                self.queries += 1
                chunk = os.urandom(rng.randint(1, 2000))
                self.tail[self.fpos] = chunk
                frames = self.tail_frames(self.fpos, chunk)
                self.fpos += len(chunk)
            elif kind < 0.8:
                frames = CCMessage.build("drop.x", {"n": rng.random()}).frames
            elif kind < 0.9:
                frames = typed_message(rng)
            else:
                frames = random_frames(rng)
            self.sock.send_multipart(frames)
            self.sent += 1
        while self.sock.poll(0):
            self.answer(self.sock.recv_multipart())
            self.answered += 1


def main():
    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    every = float(os.environ.get("SOAK_SAMPLE", "60"))
    rss_limit = float(os.environ.get("SOAK_RSS_MB", "20"))
    tmp = tempfile.mkdtemp(prefix="ccsoak-")
    servers = []
    ctx = zmq.Context()
    failures = []
    try:
        end = start(tmp, "end", END)
        servers.append(end)
        mid = start(tmp, "mid", FORWARD, role="proxy", remote=end.endpoint)
        servers.append(mid)
        local = start(tmp, "local", FORWARD, role="local", remote=mid.endpoint)
        servers.append(local)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(local.endpoint)
        traffic = Traffic(sock, random.Random(5))
        piped = ctx.socket(zmq.DEALER)
        piped.setsockopt(zmq.LINGER, 0)
        piped.connect(local.endpoint)
        pipeline = Pipeline(piped, int(os.environ.get("SOAK_INFLIGHT", "200")))
        last_answer = (0, time.monotonic())
        samples = {s.name: [] for s in servers}
        deadline = time.monotonic() + minutes * 60
        next_sample = time.monotonic()
        print("soak: %.1f minutes, a sample every %.0f s, files in %s" % (minutes, every, tmp))
        while True:
            now = time.monotonic()
            if now >= next_sample or now >= deadline:
                for s in servers:
                    if s.proc.poll() is not None:
                        raise SystemExit("soak: %s died with %s" % (s.name, s.proc.returncode))
                    samples[s.name].append(sample(s.proc.pid))
                line = "  ".join(
                    "%s %.1f MB %d fds, waiting %d" % (s.name, v[-1][0], v[-1][1], w)
                    for s in servers
                    for v, w in [(samples[s.name], s.waiting()["messages"])]
                )
                print(
                    "[%5.1f min] sent %d, answered %d, pipelined %d outstanding %d  %s"
                    % (
                        minutes - (deadline - now) / 60,
                        traffic.sent,
                        traffic.answered,
                        pipeline.answered,
                        pipeline.outstanding,
                        line,
                    ),
                    flush=True,
                )
                next_sample = now + every
                if now >= deadline:
                    break
            traffic.tick()
            pipeline.pump()
            if pipeline.answered > last_answer[0]:
                last_answer = (pipeline.answered, now)
            elif now - last_answer[1] > STALL_SECONDS:
                failures.append("pipelining client stalled: %d outstanding" % pipeline.outstanding)
                break
            time.sleep(0.05)
        # the chain still answers
        sock.send_multipart(CCMessage.build("echo.request", {"target": "end"}, route=[b"L"]).frames)
        end_of = time.monotonic() + 10
        while time.monotonic() < end_of:
            if sock.poll(100) and sock.recv_multipart()[0] == b"L":
                break
        else:
            failures.append("no echo through the chain at the end")
        time.sleep(6)  # one stats period: the infofiles hold the final totals
        print(
            "\nsummary: %d messages sent, %d replies (%d queries); pipelined %d answered; "
            "logtail fragments refused and sent again %d, not acknowledged %d"
            % (traffic.sent, traffic.answered, traffic.queries, pipeline.answered,
               traffic.resent, len(traffic.tail))
        )  # fmt: skip
        for s in servers:
            rss = [v[0] for v in samples[s.name]]
            fds = [v[1] for v in samples[s.name]]
            totals = s.stats_total()
            print(
                "  %-5s RSS MB first %.1f min %.1f max %.1f last %.1f | fds first %d max %d last %d"
                " | count %d ok %d dropped %d invalid %d crashed %d"
                % (
                    s.name,
                    rss[0],
                    min(rss),
                    max(rss),
                    rss[-1],
                    fds[0],
                    max(fds),
                    fds[-1],
                    totals.get("count", 0),
                    totals.get("count.ok", 0),
                    totals.get("count.dropped", 0),
                    totals.get("count.invalid", 0),
                    totals.get("count.crashed", 0),
                )
            )
            if growth(rss) > rss_limit:
                failures.append("%s RSS grew by %.1f MB after warm-up" % (s.name, growth(rss)))
            if growth(fds) > 20:
                failures.append("%s fds grew by %d after warm-up" % (s.name, growth(fds)))
            if totals.get("count.crashed"):
                failures.append("%s counted handler crashes" % s.name)
            if "Traceback" in s.output():
                failures.append("%s logged a traceback" % s.name)
    finally:
        for s in servers:
            s.stop()
        ctx.destroy(0)
        if not failures:
            shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL:", f)
    print("soak:", "FAILED (files kept in %s)" % tmp if failures else "OK")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
