"""logwriter: one line per record in per-host, per-job files; reopened on SIGHUP."""

import os
import re
import signal

from harness import CCTestCase, ccserver_section, wait_for

from cc.message import CCMessage

WRITER = ccserver_section("w") + """
[routes]
log = h:logw

[h:logw]
handler = logwriter
dstdir = {dstdir}
"""


def record(hostname, job, text, level="INFO"):
    fields = {
        "hostname": hostname,
        "log_level": level,
        "service_type": "svc",
        "job_name": job,
        "log_msg": text,
        "log_time": 1700000000.25,
        "log_pid": 4242,
        "log_line": 1,
        "log_function": "f",
    }
    return CCMessage.build("log." + level.lower(), fields).frames


def lines(path):
    try:
        with open(path, encoding="utf8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def messages(path):
    return [re.sub(r".*?\] ", "", line, count=1) for line in lines(path)]


class TestLogWriter(CCTestCase):
    def setUp(self):
        super().setUp()
        self.dst = os.path.join(self.tmp, "logs")
        self.server = self.start_server("w", WRITER, dstdir="logs")  # relative: runs in tmp
        self.sock = self.dealer(self.server.endpoint)

    def test_per_host_per_job_lines(self):
        self.sock.send_multipart(record("h1", "j1", "first"))
        self.sock.send_multipart(record("h1", "j2", "other job", level="WARNING"))
        self.sock.send_multipart(record("h2", "j1", "two\nlines"))
        self.sock.send_multipart(record("h1", "j1", "second"))
        self.server.wait_stat("logwriter.lines", 4)
        j1 = lines(os.path.join(self.dst, "h1", "j1.log"))
        self.assertEqual(len(j1), 2)
        self.assertRegex(j1[0], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.250 INFO h1 j1\[4242\] first$")
        self.assertTrue(j1[1].endswith(" second"))
        self.assertRegex(lines(os.path.join(self.dst, "h1", "j2.log"))[0], r" WARNING h1 j2")
        self.assertEqual(
            lines(os.path.join(self.dst, "h2", "j1.log"))[0].split("] ", 1)[1], "two\\nlines"
        )

    def test_burst_in_order(self):
        """Records drained in batches go to each file in the order they came, none lost."""
        for i in range(3000):
            self.sock.send_multipart(record("h1", "j%d" % (i % 3), "n%d" % i))
        self.server.wait_stat("logwriter.lines", 3000)
        for j in range(3):
            got = messages(os.path.join(self.dst, "h1", "j%d.log" % j))
            self.assertEqual(got, ["n%d" % i for i in range(j, 3000, 3)])

    def test_waiting_records_bounded(self):
        """At most queue-size records per thread wait: the rest are dropped and counted."""
        routes = WRITER[WRITER.index("[routes]"):]
        small = ccserver_section("small") + routes + "queue-size = 50\nworker-threads = 1\n"
        server = self.start_server("small", small, dstdir="small")
        sock = self.dealer(server.endpoint)
        for i in range(3000):
            sock.send_multipart(record("h1", "j1", "n%d" % i))

        def stat(key):
            return server.stats_total().get(key, 0)

        wait_for(lambda: stat("logwriter.lines") + stat("logwriter.dropped") == 3000)
        self.assertGreater(stat("logwriter.dropped"), 0)
        got = messages(os.path.join(self.tmp, "small", "h1", "j1.log"))
        self.assertEqual(len(got), stat("logwriter.lines"))
        self.assertEqual(got, sorted(got, key=lambda m: int(m[1:])))  # in order, gaps and all

    def test_hostile_names_rejected(self):
        os.makedirs(self.dst)
        for hostname, job in (("..", "j"), ("h", "../../x"), ("/etc", "j"), ("", "j"), ("h", "")):
            self.sock.send_multipart(record(hostname, job, "bad"))
        self.sock.send_multipart(record("h", "j", "good"))
        self.server.wait_stat("logwriter.rejected", 5)
        self.server.wait_stat("logwriter.lines", 1)
        files = {
            os.path.relpath(os.path.join(d, f), self.tmp)
            for d, _, fs in os.walk(self.tmp)
            for f in fs
            if not f.startswith("w.")
        }
        self.assertEqual(files, {"logs/h/j.log"})

    def test_sighup_reopens_for_logrotate(self):
        path = os.path.join(self.dst, "h", "j.log")
        self.sock.send_multipart(record("h", "j", "before"))
        wait_for(lambda: lines(path), what="first line")
        os.rename(path, path + ".1")
        self.sock.send_multipart(record("h", "j", "still old file"))
        self.server.wait_stat("logwriter.lines", 2)
        self.server.send_signal(signal.SIGHUP)
        self.server.wait_log(r"reloaded: ")
        self.sock.send_multipart(record("h", "j", "after"))
        wait_for(lambda: lines(path), what="reopened file")
        self.assertEqual(messages(path + ".1"), ["before", "still old file"])
        self.assertEqual(messages(path), ["after"])
