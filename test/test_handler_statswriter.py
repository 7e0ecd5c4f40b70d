"""statswriter: pub.stats / pub.state of a cc and a daemon arrive through a proxy as files."""

import json
import os

from daemonproc import DaemonTestCase
from harness import ccserver_section, wait_for

from cc.message import HOSTNAME, CCMessage

CENTRAL = ccserver_section("central") + """
[routes]
pub.stats = h:stats
pub.state = h:stats

[h:stats]
handler = statswriter
dstdir = {tmp}/stats
write-interval = 0
"""

LOCAL = ccserver_section("local", role="local") + """
[routes]
pub = h:proxy
log = h:dispose

[h:proxy]
handler = proxy
remote-cc = {central}

[h:dispose]
handler = disposer

[d:stats]
stats-period = 0.2
echo-timeout = 1
"""


class TestStatsWriter(DaemonTestCase):
    def read(self, job, kind):
        path = os.path.join(self.tmp, "stats", HOSTNAME, "%s.%s" % (job, kind))
        try:
            with open(path, encoding="utf8") as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return None

    def test_cc_and_daemon_stats_arrive_through_proxy(self):
        central = self.start_server("central", CENTRAL)
        local = self.start_server("local", LOCAL, central=central.endpoint)
        proc = self.start_daemon(local, "plugins.echodaemon", "d:stats", as_main=True)
        # the local cc's own counters and state
        stats = wait_for(lambda: self.read("local", "stats"), what="local.stats")
        self.assertEqual(stats["service_type"], "ccserver")
        self.assertIn("count", stats["totals"])
        state = wait_for(lambda: self.read("local", "state"), what="local.state")["state"]
        self.assertEqual(state["role"], "local")
        self.assertEqual(state["routes"]["pub"], ["h:proxy"])
        self.assertEqual(state["handlers"]["h:proxy"], "ProxyHandler")
        # the daemon's, job name <server job>.<section>; its counters move
        wait_for(
            lambda: (self.read("local.d:stats", "stats") or {}).get("totals", {}).get("echo.asked"),
            what="daemon's echo.asked in its pub.stats",
        )
        dstate = wait_for(lambda: self.read("local.d:stats", "state"), what="daemon state")
        self.assertEqual(dstate["state"]["pid"], proc.proc.pid)
        self.assertEqual(dstate["state"]["section"], "d:stats")
        self.assertEqual(dstate["service_type"], "echodaemon")  # python -m: not "__main__"
        # the central cc's own, routed through its own route table
        wait_for(lambda: self.read("central", "stats"), what="central.stats")
        self.assertEqual(proc.stop(), 0)

    def test_bad_reports_are_counted_not_written(self):
        central = self.start_server("central", CENTRAL)
        sock = self.dealer(central.endpoint)
        bad = [
            {"job_name": "j", "service_type": "x", "counters": "many", "period": 1},
            {"job_name": "j", "service_type": "x", "counters": {"a": "1"}, "period": 1},
            {"job_name": "j", "service_type": "x", "counters": {}, "period": 1, "hostname": ".."},
            {"job_name": "", "service_type": "x", "counters": {}, "period": 1},
        ]
        for fields in bad:
            sock.send_multipart(CCMessage.build("pub.stats", fields).frames)
        sock.send_multipart(CCMessage.build("pub.state", {"job_name": "j", "state": 1}).frames)
        central.wait_stat("statswriter.invalid", 5)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "stats", "..", "j.stats")))
        self.assertIsNone(self.read("j", "stats"))

    def test_daemon_stats_without_route_are_dropped_quietly(self):
        ini = ccserver_section("local", role="local") + """
[routes]
log = h:dispose

[h:dispose]
handler = disposer

[d:stats]
stats-period = 0.1
echo-timeout = 1
"""
        local = self.start_server("local", ini)
        proc = self.start_daemon(local, "plugins.echodaemon", "d:stats")
        local.wait_log(r"count\.dropped: [1-9]")
        self.assertEqual(proc.stop(), 0)
        self.assertNotIn("no route: pub.", local.output())

    def test_host_directory_symlinked_out_is_refused(self):
        """A host's directory made a symlink out of dstdir after its name was checked:
        nothing is written through it."""
        outside = os.path.join(self.tmp, "outside")
        os.makedirs(outside)
        central = self.start_server("central", CENTRAL)
        sock = self.dealer(central.endpoint)

        def report(host, n):
            body = {"hostname": host, "job_name": "j", "counters": {"n": n}, "time": 1.0}
            sock.send_multipart(CCMessage.build("pub.stats", body).frames)

        report("evil", 1)
        evil = os.path.join(self.tmp, "stats", "evil")
        # the server's own reports count as written files too: wait for this one
        wait_for(lambda: os.path.exists(os.path.join(evil, "j.stats")), what="evil's file")
        os.rename(evil, evil + ".old")
        os.symlink(outside, evil)
        report("evil", 2)
        report("good", 3)
        good = os.path.join(self.tmp, "stats", "good", "j.stats")
        wait_for(lambda: os.path.exists(good), what="good's file")
        central.wait_stat("statswriter.write_failed", 1)
        self.assertEqual(os.listdir(outside), [])
        with open(good, encoding="utf8") as f:
            self.assertEqual(json.load(f)["counters"], {"n": 3.0})

    def test_reports_wait_for_the_write_interval_and_a_stop_writes_them(self):
        """With write-interval, a report coming after a write waits for the interval (a newer
        one replaces it); stopping writes what waits."""
        ini = CENTRAL.replace("write-interval = 0", "write-interval = 3600")
        central = self.start_server("central", ini)
        # the server's own first report makes the first write; from then on reports wait
        wait_for(lambda: self.read("central", "stats") or self.read("central", "state"),
                 what="the first file")
        sock = self.dealer(central.endpoint)
        for n in (1, 2):
            body = {"hostname": "h1", "job_name": "j", "counters": {"n": n}, "time": 1.0}
            sock.send_multipart(CCMessage.build("pub.stats", body).frames)
        # a bad one behind them: once it is counted, they were taken
        bad = {"hostname": "h1", "job_name": "j", "counters": "many", "time": 1.0}
        sock.send_multipart(CCMessage.build("pub.stats", bad).frames)
        central.wait_stat("statswriter.invalid", 1)
        path = os.path.join(self.tmp, "stats", "h1", "j.stats")
        self.assertFalse(os.path.exists(path), "written before the interval")
        self.assertEqual(central.stop(), 0)
        with open(path, encoding="utf8") as f:
            self.assertEqual(json.load(f)["counters"], {"n": 2.0})
