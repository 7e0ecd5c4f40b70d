"""logtail -> proxy -> tailwriter: byte for byte, across rotation, truncation and SIGKILLs."""

import os
import random
import re
import signal
import subprocess
import sys

from harness import CCTestCase, ccserver_section, child_env, read_file, wait_for

from cc.files.tailsource import read_state

REMOTE = """
[routes]
pub.logtail = h:tail
log = h:log

[h:tail]
handler = tailwriter
dstdir = {tmp}/dst
worker-threads = 2

[h:log]
handler = locallogger
"""

LOCAL = """
[routes]
pub.logtail = h:proxy
log = h:log

[h:proxy]
handler = proxy
remote-cc = {remote}

[h:log]
handler = locallogger

[d:logtail]
logdir = {tmp}/src
state-file = {tmp}/logtail.save
stats-period = 0.5
ack-timeout = 1
poll-period = 0.05
buffer-bytes = 4K
window = 4
{mode}
"""

MIDDLE = """
[routes]
pub.logtail = h:proxy

[h:proxy]
handler = proxy
remote-cc = {remote}
"""

JOBMGR = """
[routes]
pub.logtail = h:proxy
job = h:jobmgr

[h:proxy]
handler = proxy
remote-cc = {remote}

[h:jobmgr]
handler = jobmgr
daemons = d:logtail

[d:logtail]
module = cc.daemon.logtail
logdir = {tmp}/src
logname = app.log
operation-mode = rotated
ack-timeout = 1
poll-period = 0.05
"""

ROTATED = "operation-mode = rotated\nlogname = app.log"
CLASSIC = "logmask = app-*.log\nfile-mode = binary\ncompression = gzip"


class Source:
    """The log the test writes: random appends, rotation by rename or by a new name."""

    def __init__(self, srcdir, rng):
        self.srcdir = srcdir
        self.rng = rng
        self.path = None
        #: every file generation written, as (path at creation, content)
        self.files = []

    def start(self, name):
        self.path = os.path.join(self.srcdir, name)
        open(self.path, "wb").close()
        self.files.append(bytearray())

    def append(self, total):
        with open(self.path, "ab") as f:
            while total > 0:
                n = min(total, self.rng.choice((1, 17, 300, 2000, 9000)))
                line = bytes(self.rng.getrandbits(8) for _ in range(n - 1)) + b"\n"
                f.write(line)
                f.flush()
                self.files[-1] += line
                total -= n

    def rotate_by_rename(self):
        os.rename(self.path, "%s.%d" % (self.path, len(self.files)))
        self.start(os.path.basename(self.path))


class LogtailCase(CCTestCase):
    """logtail, its local cc and an end-service with a tailwriter, and the log they copy."""

    def setUp(self):
        super().setUp()
        self.src = Source(os.path.join(self.tmp, "src"), random.Random(42))
        os.mkdir(self.src.srcdir)
        self.dst = os.path.join(self.tmp, "dst")
        self.procs = []

    def start_pair(self, mode, writer="", **remote_options):
        """``writer``: more options of the tailwriter; ``remote_options``: of its server."""
        tail = REMOTE.replace("worker-threads = 2", "worker-threads = 2\n" + writer)
        remote = ccserver_section("remote", **remote_options) + tail
        self.remote = self.start_server("remote", remote)
        self.local = self.start_server(
            "local",
            ccserver_section("local", role="local", cc_stats="2") + LOCAL,
            remote=self.remote.endpoint,
            mode=mode,
        )
        self.local.pin_endpoint()

    def start_chain(self, mode):
        """logtail -> local -> middle proxy -> end-service: three processes to kill."""
        self.remote = self.start_server("remote", ccserver_section("remote") + REMOTE)
        self.mid = self.start_server(
            "mid", ccserver_section("mid", role="proxy") + MIDDLE, remote=self.remote.endpoint
        )
        self.local = self.start_server(
            "local",
            ccserver_section("local", role="local", cc_stats="2") + LOCAL,
            remote=self.mid.endpoint,
            mode=mode,
        )
        self.local.pin_endpoint()

    def start_logtail(self, wait=True):
        """Start a logtail; ``wait``: until it started on a file."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "cc.daemon.logtail", self.local.ini, "d:logtail"],
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.tmp, "logtail.stderr"), "ab"),
        )
        self.procs.append(proc)
        self.addCleanup(_kill, proc)
        started = len(self.procs)
        wait_for(
            lambda: len(re.findall(r"INFO d:logtail started, connected", self.local.output()))
            >= started,
            what="logtail %d to connect" % started,
        )
        if not wait:
            return proc
        wait_for(
            lambda: len(re.findall(r"INFO started \S+ at file position", self.local.output()))
            >= started,
            what="logtail %d to start" % started,
        )
        return proc

    def restart(self, server, append_meanwhile=0):
        """Freeze a server, append to the log, SIGKILL it and start it on the same endpoint.

        What reached the frozen server is lost with it: only resending recovers that.
        """
        server.send_signal(signal.SIGSTOP)
        if server is self.local:
            self.src.append(append_meanwhile)
        else:
            key = "count.ok.msg.pub.logtail"
            before = self.fresh_stats(self.local).get(key, 0)
            self.src.append(append_meanwhile)
            self.local.wait_stat(key, before + 2)  # fragments went on to the frozen one
        server.stop(signal.SIGKILL)
        self.start_again(server)

    def start_again(self, server):
        """Start a stopped server on the endpoint it had."""
        with open(server.ini, encoding="utf8") as f:
            text = f.read()
        server.write_ini(text.replace("tcp://127.0.0.1:*", server.endpoint, 1))
        server.start()

    def fresh_stats(self, server):
        """The totals once the infofile has been rewritten twice (no older than one period)."""
        stamps = set()

        def rewritten():
            try:  # the first stats period may not have written it yet
                stamps.add(os.stat(server.infofile).st_mtime_ns)
            except FileNotFoundError:
                pass
            return len(stamps) > 2

        wait_for(rewritten, what="%s rewritten twice" % server.infofile)
        return server.stats_total()

    def wait_copies(self, timeout=20):
        """Wait until the destination files are exactly the source generations."""
        want = sorted(bytes(c) for c in self.src.files if c)

        got = {}

        def equal():
            got.clear()
            got.update(self.copies())
            return sorted(got.values()) == want

        try:
            wait_for(equal, timeout, "destination equal to source")
        except AssertionError as ex:
            sizes = {n: len(d) for n, d in got.items()}
            with open(os.path.join(self.tmp, "logtail.stderr"), encoding="utf8") as f:
                tail_log = f.read()[-3000:]
            raise AssertionError(
                "%s: sources %s, destinations %s\nlogtail:\n%s"
                % (ex, [len(c) for c in want], sizes, tail_log)
            ) from None

    def copies(self):
        """The destination files: name -> content."""
        found = {}
        for name in os.listdir(self.dst) if os.path.isdir(self.dst) else ():
            data = read_file(os.path.join(self.dst, name))
            if not name.startswith(".") and data is not None:
                found[name] = data
        return found


class TestLogtail(LogtailCase):
    def test_rotated_mode_with_kills_of_tailer_and_writer(self):
        self.src.start("app.log")
        self.start_pair(ROTATED)
        first = self.start_logtail()
        self.src.append(50000)
        self.src.rotate_by_rename()
        self.src.append(30000)
        self.remote.wait_stat("appended_bytes", 50000)
        first.kill()
        first.wait()
        self.src.append(20000)
        self.start_logtail()
        self.src.rotate_by_rename()
        self.src.append(20000)
        self.restart(self.remote, append_meanwhile=10000)
        self.src.append(30000)
        self.wait_copies()
        self.assertEqual(len(self.src.files), 3)
        # what the killed writer had not written was sent again
        self.local.wait_log(r"logtail\.resent: \d+")

    def test_classic_mode_with_kills_of_tailer_and_proxy(self):
        self.src.start("app-001.log")
        self.start_pair(CLASSIC)
        first = self.start_logtail()
        self.src.append(40000)
        self.src.start("app-002.log")
        self.src.append(20000)
        first.kill()
        first.wait()
        self.src.append(20000)
        self.start_logtail()
        self.restart(self.local, append_meanwhile=10000)
        self.src.start("app-003.log")
        self.src.append(30000)
        self.wait_copies()

    def test_sigkill_of_every_process_in_a_three_hop_chain(self):
        self.src.start("app.log")
        self.start_chain(ROTATED)
        tailer = self.start_logtail()
        self.src.append(30000)
        self.restart(self.mid, append_meanwhile=10000)
        self.src.append(10000)
        self.restart(self.remote, append_meanwhile=10000)
        self.src.append(10000)
        self.restart(self.local, append_meanwhile=10000)
        tailer.kill()
        tailer.wait()
        self.src.append(10000)
        self.start_logtail()
        self.src.rotate_by_rename()
        self.src.append(10000)
        self.wait_copies(timeout=30)
        self.assertEqual(len(self.src.files), 2)

    def test_truncated_source_goes_to_a_new_file(self):
        self.src.start("app.log")
        self.start_pair(ROTATED + "\nuse-blob = no\ncompression = bzip2")
        self.start_logtail()
        self.src.append(5000)
        self.wait_copies()
        # the position is saved once acknowledged
        state = os.path.join(self.tmp, "logtail.save")
        wait_for(lambda: getattr(read_state(state), "offset", None) == 5000, what="saved position")
        with open(self.src.path, "r+b") as f:
            f.truncate(0)
        self.src.files.append(bytearray())
        self.src.append(3000)
        self.wait_copies()
        self.local.wait_log("truncated, reading it anew")

    def test_lag_beyond_lag_max_bytes_is_skipped(self):
        self.src.start("app.log")
        self.start_pair(ROTATED + "\nlag-max-bytes = 1K")
        first = self.start_logtail()
        self.src.append(500)
        self.wait_copies()
        first.send_signal(signal.SIGTERM)
        self.assertEqual(first.wait(10), 0)
        self.src.append(3000)  # more than lag-max-bytes behind at the next start
        self.start_logtail()
        self.local.wait_log(r"lag too big \(3000 bytes\), skipping to the end")
        self.src.append(700)
        # the skipped part is in neither copy: the second one begins after it, with no padding
        whole = bytes(self.src.files[0])
        self.src.files[0:1] = [bytearray(whole[:500]), bytearray(whole[3500:])]
        self.wait_copies()
        self.remote.wait_log(r"new copy \S+ of '\S+/app.log' on '\S+', beginning at source "
                             r"offset 3500")  # fmt: skip

    def test_under_jobmgr_the_state_file_follows_the_pidfile_template(self):
        """The original's cclocal.ini: no state-file, [ccserver] pidfile = .../%(job_name)s.pid."""
        self.src.start("app.log")
        self.remote = self.start_server("remote", ccserver_section("remote") + REMOTE)
        local_ini = (
            ccserver_section("local", role="local").replace(
                "pidfile = {tmp}/local.pid", "pidfile = {tmp}/pid/%(job_name)s.pid"
            )
            + JOBMGR
        )
        os.mkdir(os.path.join(self.tmp, "pid"))
        local = self.start_server("local", local_ini, remote=self.remote.endpoint)
        self.src.append(5000)
        pidfile = os.path.join(self.tmp, "pid", "local.d:logtail.pid")
        pid = int(wait_for(lambda: read_file(pidfile), what=pidfile))
        self.src.append(3000)
        state = os.path.join(self.tmp, "pid", "local.d:logtail.save")
        wait_for(
            lambda: getattr(read_state(state), "offset", 0) == 8000, what="position in " + state
        )
        self.assertEqual(re.findall(r"Job d:logtail started: pid (\d+)", local.log_text()),
                         [str(pid)])  # fmt: skip
        self.assertEqual(local.stop(signal.SIGINT), 0)
        self.assertFalse(os.path.exists(pidfile))

    def test_a_huge_buffer_bytes_still_delivers(self):
        """buffer-bytes = 1G would make fragments no writer takes: lowered to 16M, all arrives."""
        self.src.start("app.log")
        remote = REMOTE.replace("worker-threads = 2", "worker-threads = 2\nmax-file-size = 20M")
        self.remote = self.start_server("remote", ccserver_section("remote") + remote)
        local = LOCAL.replace("buffer-bytes = 4K", "buffer-bytes = 1G")
        self.local = self.start_server(
            "local", ccserver_section("local", role="local") + local,
            remote=self.remote.endpoint, mode=ROTATED,
        )  # fmt: skip
        self.local.pin_endpoint()
        tailer = self.start_logtail()
        stderr = os.path.join(self.tmp, "logtail.stderr")
        self.assertIn(b"buffer-bytes lowered to 16M", read_file(stderr))  # read before start
        tailer.send_signal(signal.SIGSTOP)  # it finds all 40M at once when it wakes
        data = os.urandom(40 * 1024 * 1024)
        with open(self.src.path, "ab") as f:
            f.write(data)
        self.src.files[-1] += data
        tailer.send_signal(signal.SIGCONT)
        self.wait_copies(timeout=60)
        self.assertNotIn("too-large", self.local.output())

    def test_bad_options_are_refused(self):
        self.start_pair("operation-mode = sideways\nlogmask = *.log")
        result = self.run_command(
            [sys.executable, "-m", "cc.daemon.logtail", self.local.ini, "d:logtail"]
        )
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            "[d:logtail]: operation-mode = sideways: expected one of classic, rotated",
            result.stderr,
        )


def _kill(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()
