"""Fault injection against real processes: a remote that never reads, a full disk, SIGKILL.

After each fault the server is still up, answers echo, has kept its memory
bounded and has counted every message it could not deliver or write; what
was acknowledged is on disk as sent.
"""

import os
import random
import re
import signal
import subprocess

import test_handler_jobmgr as jobmgr_tests
import zmq
from harness import TEST_DIR, CCTestCase, ccserver_section, pid_alive, wait_for
from test_reliability import rss_mb

from cc.message import CCMessage

STUCK_REMOTE = """
[routes]
echo = h:echo
log = h:proxy

[h:echo]
handler = echo

[h:proxy]
handler = proxy
remote-cc = {remote}
zmq_sndbuf = 4K
queue-bytes = 100K
"""

WRITERS = """
[routes]
echo = h:echo
pub.infofile = h:info
pub.logtail = h:tail

[h:echo]
handler = echo

[h:info]
handler = infowriter
dstdir = {full}/info
worker-threads = 2

[h:tail]
handler = tailwriter
dstdir = {full}/tail
worker-threads = 2
"""


class TestRemoteNeverReads(CCTestCase):
    MESSAGES = 50000

    def test_proxy_to_a_remote_that_accepts_but_never_reads(self):
        # a ROUTER that completes the handshake, then never calls recv, with tiny buffers
        stuck = self.context.socket(zmq.ROUTER)
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.RCVBUF, 4096)
        stuck.setsockopt(zmq.LINGER, 0)
        port = stuck.bind_to_random_port("tcp://127.0.0.1")
        self.sockets.append(stuck)
        server = self.start_server(
            "stuck",
            ccserver_section("stuck") + STUCK_REMOTE,
            remote="tcp://127.0.0.1:%d" % port,
        )
        pid = server.proc.pid
        start = rss_mb(pid)
        sock = self.dealer(server.endpoint)
        frames = CCMessage.build("log.info", {"log_msg": "y" * 1000}).frames
        peak = start
        for i in range(self.MESSAGES):
            sock.send_multipart(frames)
            if i % 5000 == 0:
                peak = max(peak, rss_mb(pid))
                # the server answers while its remote is stuck
                reply = self.query(sock, "echo.request", {"target": "t%d" % i}, qid=b"E%d" % i)
                self.assertEqual(reply.get_body()["orig_target"], "t%d" % i)
        server.wait_stat("count", self.MESSAGES, timeout=60)
        # held at most: the stream queue (100K: under 100 of these), libzmq's pipe (100), the kernel
        # buffers (a few 10 KB) and the remote's one message: every other one is counted
        dropped = server.wait_stat("count.dropped.queue_full", self.MESSAGES - 400, timeout=30)
        peak = max(peak, rss_mb(pid))
        self.assertLess(peak - start, 100, "RSS grew from %.1f to %.1f MB" % (start, peak))
        if os.environ.get("CC_TEST_VERBOSE"):
            print("never-reading remote: %d dropped, RSS %.1f -> %.1f MB" % (dropped, start, peak))
        reply = self.query(sock, "echo.request", {"target": "after"}, qid=b"EAFTER")
        self.assertEqual(reply.get_body()["orig_target"], "after")


class TestFullDisk(CCTestCase):
    """infowriter and tailwriter on a 1 MB tmpfs that fills up."""

    def setUp(self):
        super().setUp()
        self.full = os.path.join(self.tmp, "full")
        os.mkdir(self.full)
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "cctest", self.full],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            self.skipTest("cannot mount a small tmpfs: %s" % res.stderr.strip())
        self.addCleanup(subprocess.run, ["umount", "-l", self.full], check=False)
        # write failures are logged as errors, never as tracebacks
        self.server = self.start_server("disk", ccserver_section("disk") + WRITERS, full=self.full)
        self.sock = self.dealer(self.server.endpoint)

    def fill(self, keep):
        """Fill the file system up but for ``keep`` bytes; return the filler's path."""
        path = os.path.join(self.full, "filler")
        st = os.statvfs(self.full)
        with open(path, "wb") as f:
            f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - keep))
        return path

    def infofile(self, name, data, mtime):
        body = {"hostname": "h1", "filename": name, "mtime": mtime, "comp": "", "data": ""}
        return CCMessage.build("pub.infofile", body, blob=data).frames

    def assert_echo(self):
        reply = self.query(self.sock, "echo.request", {"target": "disk"}, qid=b"QE")
        self.assertEqual(reply.get_body()["orig_target"], "disk")

    def test_infowriter_counts_failures_leaves_no_temp_files_and_recovers(self):
        filler = self.fill(keep=0)
        big = os.urandom(200 * 1024)
        for n in range(5):
            self.sock.send_multipart(self.infofile("f%d.info" % n, big, 1000 + n))
        self.server.wait_stat("infowriter.failed", 5)
        self.assert_echo()
        leftovers = [
            os.path.join(d, f) for d, _, files in os.walk(self.full) for f in files if ".new" in f
        ]
        self.assertEqual(leftovers, [])
        # space again: the newest version of a file arrives whole
        os.unlink(filler)
        self.sock.send_multipart(self.infofile("f0.info", big, 2000))
        self.server.wait_stat("written_files", 1)
        with open(os.path.join(self.full, "info", "h1--f0.info"), "rb") as f:
            self.assertEqual(f.read(), big)

    def test_tailwriter_refuses_to_ack_what_it_could_not_write(self):
        data = os.urandom(600 * 1024)
        half = len(data) // 2
        body = {
            "hostname": "db1",
            "filename": "/var/log/pg.log",
            "comp": "",
            "st_dev": 1,
            "st_ino": 7,
            "op_mode": "classic",
            "ack": True,
            "data": "",
        }

        def send(fpos, chunk, qid):
            msg = CCMessage.build("pub.logtail", dict(body, fpos=fpos), route=[qid], blob=chunk)
            self.sock.send_multipart(msg.frames)
            return CCMessage(self.recv(self.sock))

        first = send(0, data[:half], b"Q0")
        self.assertEqual(first.type, "reply.pub.logtail")
        filler = self.fill(keep=64 * 1024)
        second = send(half, data[half:], b"Q1")
        self.assertEqual(second.type, "error")
        self.assertEqual(second.get_body()["code"], "write-failed")
        self.server.wait_stat("tailwriter.failed.write_failed", 1)
        self.assert_echo()
        # space again: logtail sends the unacknowledged fragment again; the copy is exact
        os.unlink(filler)
        third = send(half, data[half:], b"Q2")
        self.assertEqual(third.type, "reply.pub.logtail", third.get_body())
        path = wait_for(
            lambda: [os.path.join(d, f) for d, _, fs in os.walk(self.full + "/tail") for f in fs],
            what="the tail copy",
        )
        with open(path[0], "rb") as f:
            self.assertEqual(f.read(), data)


class TestJobMgrKilled(CCTestCase):
    # the jobmgr tests' helpers (the module, not its class: nose2 would run that here too)
    job_status = jobmgr_tests.TestJobMgr.job_status
    wait_keepalive_from = jobmgr_tests.TestJobMgr.wait_keepalive_from

    def test_sigkill_of_the_local_cc_leaves_no_orphan_daemon(self):
        ini = ccserver_section("local", role="local") + jobmgr_tests.JOBS
        server = self.start_server("local", ini, daemons="d:echo", scripts=TEST_DIR)

        def started():
            return [int(p) for p in re.findall(r"Job d:echo started: pid (\d+)", server.log_text())]

        pid = wait_for(started, what="the daemon")[0]
        server.wait_stat("jobmgr.keepalive", 2)
        server.stop(signal.SIGKILL)
        # the orphaned daemon notices and exits: no second copy next to the restarted cc's
        wait_for(lambda: not pid_alive(pid), what="orphaned daemon %d to exit" % pid)
        server.start()
        new = wait_for(lambda: len(started()) > 1 and started()[-1], what="a new daemon")
        self.wait_keepalive_from(server, "d:echo", new)


class TestRemoteAnswersGarbage(CCTestCase):
    def test_garbage_from_the_remote_is_counted_and_the_proxy_serves_on(self):
        evil = self.context.socket(zmq.ROUTER)
        evil.setsockopt(zmq.LINGER, 0)
        port = evil.bind_to_random_port("tcp://127.0.0.1")
        self.sockets.append(evil)
        server = self.start_server(
            "p",
            ccserver_section("p") + STUCK_REMOTE + "ping = yes\n",
            remote="tcp://127.0.0.1:%d" % port,
        )
        sock = self.dealer(server.endpoint)
        rng = random.Random(3)
        answered = 0
        for i in range(2000):
            sock.send_multipart(CCMessage.build("log.info", {"n": i}, route=[b"Q%d" % i]).frames)
            while evil.poll(0):
                frames = evil.recv_multipart()
                answered += 1
                for _ in range(3):  # random frames back, some with a real route
                    atoms = [b"", b"Q1", frames[1], b"\x00x", rng.randbytes(5), b"echo.response"]
                    junk = [rng.choice(atoms) for _ in range(rng.randint(0, 6))]
                    evil.send_multipart([frames[0]] + junk)
        self.assertGreater(answered, 100)
        sock.send_multipart(CCMessage.build("echo.request", {"target": "ok"}, route=[b"QE"]).frames)
        # garbage relayed back to this client may come first; the echo answer is among it
        frames = self.recv(sock)
        while frames[0] != b"QE":
            frames = self.recv(sock)
        self.assertEqual(CCMessage(frames).get_body()["orig_target"], "ok")
        server.wait_stat("count.dropped.unroutable", 1)
        self.assertEqual(server.stats_total().get("count.crashed", 0), 0)
