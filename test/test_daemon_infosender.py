"""infosender (and infoscript) through a local cc and a proxy into an infowriter.

The original's infofile scenario, with absolute and relative ``dstdir``,
plus what the original got wrong: files rewritten faster than the scan, and
resending everything after a restart.
"""

import gzip
import os
import re
import signal
import socket
import time

from daemonproc import DaemonTestCase
from harness import ccserver_section, read_file, wait_for

from cc.message import CCMessage

RECV = ccserver_section("recv") + """
[routes]
pub.infofile = h:info
log = h:locallog

[h:info]
handler = infowriter
dstdir = {dstdir}
host-subdirs = yes
bakext = --prev
{writer_extra}

[h:locallog]
handler = locallogger
"""

SEND = ccserver_section("send", role="local", cc_stats="2") + """
[routes]
pub = h:proxy
log = h:locallog

[h:proxy]
handler = proxy
remote-cc = {remote}

[h:locallog]
handler = locallogger

[d:infosender]
infodir = {tmp}/src-infofile
infomask = info.*
compression = gzip
compression-level = 1
use-blob = 1
scan-period = {scan}
ack-timeout = 1
stats-period = 0.2
state-file = {tmp}/infosender.state
{sender_extra}

[d:infoscript]
info-script = ps axuw
info-period = 5
info-name = dmesg
compression = gzip
use-blob = 1
"""

HOST = socket.gethostname()


def write(path, data, mtime=None):
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


class TestInfosender(DaemonTestCase):
    def topology(self, dstdir="{tmp}/dst-infofile", scan="0.2", writer_extra="", sender_extra=""):
        self.src = os.path.join(self.tmp, "src-infofile")
        os.makedirs(self.src, exist_ok=True)
        dstdir = dstdir.replace("{tmp}", self.tmp)
        self.recv = self.start_server("recv", RECV, dstdir=dstdir, writer_extra=writer_extra)
        self.send = self.start_server(
            "send", SEND, remote=self.recv.endpoint, scan=scan, sender_extra=sender_extra
        )
        self.dst = os.path.join(self.tmp, "dst-infofile", HOST)

    def scenario(self, dstdir):
        self.topology(dstdir)
        for i in range(3):
            write(os.path.join(self.src, "info.%d" % i), b"file %d\n" % i * 100)
        self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        self.start_daemon(self.send, "cc.daemon.infoscript", "d:infoscript")
        sock = self.dealer(self.send.endpoint)
        fields = dict(hostname="me", filename="info.1", mtime=time.time(), comp="gzip", data="")
        sock.send_multipart(
            CCMessage.build("pub.infofile", fields, blob=gzip.compress(b"raw\n")).frames
        )
        me = os.path.join(self.tmp, "dst-infofile", "me", "info.1")
        wait_for(lambda: read_file(me) == b"raw\n", what=me)
        dmesg = wait_for(lambda: read_file(os.path.join(self.dst, "dmesg")), what="dmesg")
        self.assertIn(b"PID", dmesg)
        for i in range(3):
            path = os.path.join(self.dst, "info.%d" % i)
            wait_for(lambda: read_file(path) == b"file %d\n" % i * 100, what=path)
            src_mtime = os.stat(os.path.join(self.src, "info.%d" % i)).st_mtime
            self.assertAlmostEqual(os.stat(path).st_mtime, src_mtime, places=5)
        # the daemons' own log records reach the local cc as log.*
        self.send.wait_log(r"\[send\.d:infosender@\S+\] .* d:infosender started")
        self.send.wait_log(r"\[send\.d:infoscript@\S+\] .* d:infoscript started")

    def test_scenario_absolute_dstdir(self):
        self.scenario("{tmp}/dst-infofile")

    def test_scenario_relative_dstdir(self):
        self.scenario("dst-infofile")  # servers run in {tmp}

    def test_changed_file_sent_again_previous_kept(self):
        self.topology()
        path = os.path.join(self.src, "info.a")
        write(path, b"one", mtime=1000)
        self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        dst = os.path.join(self.dst, "info.a")
        wait_for(lambda: read_file(dst) == b"one", what="first version")
        write(path, b"two", mtime=2000)
        wait_for(lambda: read_file(dst) == b"two", what="second version")
        self.assertEqual(read_file(dst + "--prev"), b"one")

    def test_file_changing_faster_than_scan_is_sent(self):
        self.topology(scan="0.5")
        path = os.path.join(self.src, "info.fast")
        self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        dst = os.path.join(self.dst, "info.fast")
        deadline = time.monotonic() + 10
        n = 0
        # rewritten every 50 ms: the original never sent it (never stable for a scan)
        while read_file(dst) is None and time.monotonic() < deadline:
            n += 1
            tmp = os.path.join(self.src, "tmp.fast")  # replaced atomically, as producers should
            write(tmp, b"version %d" % n)
            os.rename(tmp, path)
            time.sleep(0.05)
        got = read_file(dst)
        self.assertIsNotNone(got, "a file changing every 50 ms was never sent")
        self.assertRegex(got, rb"^version \d+$")
        write(path, b"final")
        wait_for(lambda: read_file(dst) == b"final", what="final version")

    def test_version_lost_with_a_killed_writer_is_sent_again(self):
        self.topology()
        path = os.path.join(self.src, "info.k")
        write(path, b"one", mtime=1000)
        self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        dst = os.path.join(self.dst, "info.k")
        wait_for(lambda: read_file(dst) == b"one", what="first version")
        # the writer freezes: the next version reaches it and dies with it
        self.recv.send_signal(signal.SIGSTOP)
        write(path, b"two", mtime=2000)
        self.send.wait_stat("count.ok.msg.pub.infofile", 2)
        self.recv.stop(signal.SIGKILL)
        with open(self.recv.ini, encoding="utf8") as f:
            text = f.read()
        self.recv.write_ini(text.replace("tcp://127.0.0.1:*", self.recv.endpoint, 1))
        self.recv.start()
        # unacknowledged, so sent again: the newest version arrives without another change
        wait_for(
            lambda: read_file(dst) == b"two", timeout=20, what="the version lost with the writer"
        )

    def test_version_refused_as_too_large_waits_for_a_change(self):
        self.topology(writer_extra="max-file-size = 1K")
        big = os.path.join(self.src, "info.big")
        write(big, b"x" * 2000, mtime=1000)
        self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        self.recv.wait_stat("infowriter.too_large", 1)
        write(os.path.join(self.src, "info.small"), b"small", mtime=1000)
        self.recv.wait_stat("written_files", 1)
        # scans went on meanwhile (info.small needed two): the refused version was not resent
        self.assertEqual(self.recv.stats_total()["infowriter.too_large"], 1)
        self.assertEqual(read_file(os.path.join(self.dst, "info.small")), b"small")
        self.assertIsNone(read_file(os.path.join(self.dst, "info.big")))
        write(big, b"y" * 500, mtime=2000)
        wait_for(lambda: read_file(os.path.join(self.dst, "info.big")) == b"y" * 500, what="big")

    def test_file_over_max_file_size_is_not_read_until_it_changes(self):
        self.topology(sender_extra="max-file-size = 1K")
        big = os.path.join(self.src, "info.big")
        write(big, b"x" * 2000, mtime=1000)
        self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        self.send.wait_log(r"info\.big is larger than max-file-size \(2000 > 1024 bytes\)")
        write(os.path.join(self.src, "info.small"), b"small", mtime=1000)
        wait_for(lambda: read_file(os.path.join(self.dst, "info.small")), what="info.small")
        self.send.wait_log(r"INFO \{.*infosender\.too_large: 1")
        self.assertEqual(len(re.findall("larger than max-file-size", self.send.log_text())), 1)
        self.assertIsNone(read_file(os.path.join(self.dst, "info.big")))
        write(big, b"y" * 500, mtime=2000)
        wait_for(lambda: read_file(os.path.join(self.dst, "info.big")) == b"y" * 500, what="big")

    def test_restart_sends_only_changed_files(self):
        self.topology()
        for name in ("info.1", "info.2"):
            write(os.path.join(self.src, name), name.encode(), mtime=1000)
        daemon = self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        self.recv.wait_stat("written_files", 2)
        self.assertEqual(daemon.stop(), 0)
        write(os.path.join(self.src, "info.9"), b"new while down", mtime=2000)
        self.start_daemon(self.send, "cc.daemon.infosender", "d:infosender")
        wait_for(lambda: read_file(os.path.join(self.dst, "info.9")), what="info.9")
        write(os.path.join(self.src, "info.9"), b"changed", mtime=3000)
        wait_for(lambda: read_file(os.path.join(self.dst, "info.9")) == b"changed", what="change")
        self.recv.wait_stat("written_files", 4)
        # the unchanged info.1 and info.2 were not sent again: the writer skipped nothing
        self.assertNotIn("infowriter.skipped", self.recv.stats_total())
