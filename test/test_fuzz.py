"""Live fuzzing: random frames and valid-typed messages with random bodies for every route.

One end-service runs every handler (a proxy to a second server, dbhandler
pointing at no database so every call fails); a local server runs jobmgr.
Seeded random input goes to both; afterwards each server must still answer
echo, must have counted what it rejected, and must not have logged a
traceback or counted a handler crash.  ``test/fuzz_corpus.jsonl`` holds
inputs kept as regression cases (hex frames, one message a line), replayed
first.  ``CC_TEST_LONG=1`` sends ten times as much.
"""

import base64
import json
import os
import random

from harness import TEST_DIR, CCTestCase, ccserver_section, wait_for

from cc.message import CCMessage

LONG = bool(os.environ.get("CC_TEST_LONG"))
CORPUS = os.path.join(TEST_DIR, "fuzz_corpus.jsonl")
#: CC_FUZZ_SEED=n replays another sequence
SEED = int(os.environ.get("CC_FUZZ_SEED", "7"))

SINK = """
[routes]
echo = h:echo
fwd = h:disposer

[h:echo]
handler = echo

[h:disposer]
handler = disposer
"""

EVERYTHING = """
[routes]
echo = h:echo
fwd = h:proxy
filt = h:filter
dly = h:delay
drop = h:disposer
log = h:locallog, h:logwriter
pub.infofile = h:infowriter
pub.logtail = h:tailwriter
pub.stats = h:statswriter
pub.state = h:statswriter
task = h:taskrouter
db = h:db

[h:echo]
handler = echo

[h:proxy]
handler = proxy
remote-cc = {sink}
ping = yes

[h:filter]
handler = filter
forward-to = h:disposer
include = filt.a*, drop.*
exclude = filt.ab*

[h:delay]
handler = delay
forward-to = h:disposer
delay = 0.05
queue-size = 50

[h:disposer]
handler = disposer

[h:locallog]
handler = locallogger

[h:logwriter]
handler = logwriter
dstdir = {tmp}/logs

[h:infowriter]
handler = infowriter
dstdir = {tmp}/info
bakext = --prev

[h:tailwriter]
handler = tailwriter
dstdir = {tmp}/tail

[h:statswriter]
handler = statswriter
dstdir = {tmp}/stats
max-entries = 50

[h:taskrouter]
handler = taskrouter

[h:db]
handler = dbhandler
db = host=127.0.0.1 port=1 dbname=nothing
connect-timeout = 1
allowed-functions = *
worker-threads = 2
zmq_hwm = 20
"""

LOCAL = """
[routes]
echo = h:echo
job = h:jobmgr
log = h:locallog

[h:echo]
handler = echo

[h:locallog]
handler = locallogger

[h:jobmgr]
handler = jobmgr
daemons = d:echo
keepalive-period = 0.5
restart-delay = 0.2

[d:echo]
module = plugins.echodaemon
stats-period = 60
"""

#: type frames and the fields their handlers read
TYPES = {
    "echo.request": ["target"],
    "echo.response": ["orig_hostname", "orig_target", "orig_time"],
    "fwd.x": ["a"],
    "filt.abc": ["a"],
    "filt.a": ["a"],
    "dly.x": ["a"],
    "drop.it": ["a"],
    "log.info": ["log_level", "service_type", "job_name", "log_msg", "log_time", "log_pid"],
    "log.error": ["log_level", "job_name", "log_msg", "hostname"],
    "pub.infofile": ["mtime", "filename", "comp", "hostname", "data"],
    "pub.logtail": [
        "filename",
        "comp",
        "fpos",
        "st_dev",
        "st_ino",
        "hostname",
        "generation",
        "ack",
        "data",
    ],
    "pub.stats": ["job_name", "service_type", "counters", "period", "hostname", "totals"],
    "pub.state": ["job_name", "service_type", "state", "hostname"],
    "task.register": ["host"],
    "task.send.t1": ["task_host", "task_handler", "task_id"],
    "task.reply.t1": ["task_id", "status"],
    "db": ["function", "params", "return"],
    "db.confdb": ["function", "params", "return"],
    "job.config": ["job_name"],
    "job.keepalive": ["job_name"],
}

NASTY_STRINGS = [
    "",
    "..",
    "../../etc/passwd",
    "/etc/passwd",
    "a/../../b",
    "x\x00y",
    "%(hostname)s",
    "%s%s%n",
    "\u202e\u00e9\u4e2d",
    "a" * 300,
    "public.f",
    "pg_sleep",
    "gzip",
    "bzip2",
    "none",
    "*",
    "d:echo",
    "fuzz.echo",
    "local",
]


def rand_value(rng, depth=0):
    kind = rng.randrange(10 if depth < 2 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**70), 2**31, 7])
    if kind == 3:
        return rng.choice([0.0, -1.5, 1e308, 1.7e9, float(rng.randint(0, 2**40))])
    if kind in (4, 5):
        return rng.choice(NASTY_STRINGS)
    if kind == 6:
        return base64.b64encode(rng.randbytes(rng.randint(0, 30))).decode()
    if kind in (7, 8):
        return [rand_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(NASTY_STRINGS): rand_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def plausible(rng, field):
    """A value of the right kind for ``field``, so that handlers get past their first checks."""
    if field in ("fpos", "st_dev", "st_ino", "generation", "log_pid", "period"):
        return rng.choice([0, 1, rng.randrange(1 << 20), rng.randrange(1 << 62)])
    if field in ("mtime", "log_time", "orig_time"):
        return rng.choice([0.0, 1e9, 1.7e9 + rng.random(), 4e9])
    if field == "ack":
        return True
    if field in ("comp",):
        return rng.choice(["", "gzip", "bzip2"])
    if field in ("params",):
        return rng.choice([[], [1, "a"], {"a": None}])
    if field in ("counters", "totals", "state"):
        return {"count": rng.randrange(100), rng.choice(NASTY_STRINGS): rng.random()}
    if field == "return":
        return rng.choice(["no", "one", "all", "json"])
    if field == "data":
        return base64.b64encode(rng.randbytes(rng.randint(0, 100))).decode()
    return rng.choice(["h%d" % rng.randrange(5), "f.log", "public.f", "j"] + NASTY_STRINGS[:4])


def typed_message(rng):
    """A message of a routed type whose fields hold random values (some fields left out)."""
    msgtype = rng.choice(list(TYPES))
    value = plausible if rng.random() < 0.5 else (lambda rng, field: rand_value(rng))
    fields = {f: value(rng, f) for f in TYPES[msgtype] if rng.random() < 0.85}
    route = [b"F%d" % rng.randrange(1000)] if rng.random() < 0.7 else []
    blob = rng.randbytes(rng.randint(0, 64)) if rng.random() < 0.3 else None
    try:
        return CCMessage.build(msgtype, fields, route=route, blob=blob).frames
    except (TypeError, ValueError):  # not JSON-serialisable: send raw JSON-ish bytes
        return route + [b"", msgtype.encode(), repr(fields).encode()]


def random_frames(rng):
    atoms = [b"", b"F1", b"{}", b"[]", b"null", b"\xff\xfe", b'{"req": "echo.request"}']
    atoms += [t.encode() for t in TYPES]
    return [
        rng.choice(atoms) if rng.random() < 0.8 else rng.randbytes(rng.randint(0, 40))
        for _ in range(rng.randint(1, 7))
    ]


def load_corpus():
    with open(CORPUS, encoding="ascii") as f:
        return [
            [bytes.fromhex(h) for h in json.loads(line)]
            for line in f
            if line.strip() and not line.startswith("#")
        ]


class TestFuzz(CCTestCase):
    COUNT = 30000 if LONG else 3000

    def setUp(self):
        super().setUp()
        # dbhandler logs its failing connections; that is expected, a traceback is not
        sink = self.start_server("sink", ccserver_section("sink") + SINK)
        self.server = self.start_server(
            "fz",
            ccserver_section("fz", cc_stats="2", cc_max_message_size="64K") + EVERYTHING,
            sink=sink.endpoint,
        )
        self.sock = self.dealer(self.server.endpoint)

    def blast(self, sock, server, inputs):
        before = server.stats_total().get("count", 0)
        for frames in inputs:
            sock.send_multipart(frames)
        # every message counted (the proxy's ping echoes add to the count)
        server.wait_stat("count", before + len(inputs), timeout=60)
        self.assert_echo(sock, server)

    def assert_echo(self, sock, server):
        """Echo answers (replies to the garbage come first and are skipped)."""
        probe = CCMessage.build("echo.request", {"target": "alive"}, route=[b"QALIVE"]).frames
        sock.send_multipart(probe)

        def answered():
            while sock.poll(100):
                frames = sock.recv_multipart()
                if frames[0] == b"QALIVE":
                    return CCMessage(frames)
            return None

        reply = wait_for(answered, timeout=30, what="echo after fuzzing %s" % server.name)
        self.assertEqual(reply.get_body()["orig_target"], "alive")

    def assert_clean(self, server):
        totals = server.stats_total()
        self.assertGreater(totals.get("count.invalid", 0), 0)
        self.assertEqual(totals.get("count.crashed", 0), 0, "a handler raised: see the log")
        self.assertNotIn("Traceback", server.output())
        return totals

    def test_corpus_replays_cleanly(self):
        self.blast(self.sock, self.server, load_corpus())
        self.assert_clean(self.server)

    def test_random_frames_and_typed_bodies_on_every_route(self):
        rng = random.Random(SEED)
        inputs = [
            typed_message(rng) if rng.random() < 0.6 else random_frames(rng)
            for _ in range(self.COUNT)
        ]
        self.blast(self.sock, self.server, inputs)
        totals = self.assert_clean(self.server)
        if os.environ.get("CC_TEST_VERBOSE"):
            print("fuzz: %d sent, %s" % (len(inputs), totals))

    def test_local_with_jobmgr_survives(self):
        local = self.start_server("fzl", ccserver_section("fzl", role="local") + LOCAL)
        local.wait_log(r"Job d:echo started")
        sock = self.dealer(local.endpoint)
        rng = random.Random(SEED + 4)
        inputs = [
            typed_message(rng) if rng.random() < 0.6 else random_frames(rng)
            for _ in range(self.COUNT // 3)
        ]
        self.blast(sock, local, inputs)
        self.assert_clean(local)
        # the job still gets its config and keeps running
        reply = self.query(sock, "job.config", {"job_name": "fzl.d:echo"}, qid=b"QCFG")
        self.assertIn(reply.type, ("job.config", "error"))
