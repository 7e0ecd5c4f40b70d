"""The fleet page, rendered by a real headless browser: stale hosts, restarts, no foreign requests.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped with a message where it is absent.
"""

import html.parser
import json
import os
import shutil
import signal
import subprocess
import unittest
from urllib.parse import urlsplit

from fleethosts import FleetCase
from harness import child_env

from cc.fleet import fleet_rows, render_fleet
from cc.statsstore import StatsEntry

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",  # the page is local (a package build sets a proxy that refuses all)
]


class RowParser(html.parser.HTMLParser):
    """The ``<tr id=host-HOST:CC>`` rows of the page: (host, class, text, cc), in order."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and (attrs.get("id") or "").startswith("host-"):
            host, _, cc = attrs["id"][5:].partition(":")
            self.rows.append([host, attrs.get("class"), "", cc])

    def handle_data(self, data):
        if self.rows:
            self.rows[-1][2] += data + " "


@unittest.skipUnless(
    os.access(CHROMIUM, os.X_OK),
    "%s not installed: apt-get install chromium (.ci/run does)" % CHROMIUM,
)
class TestFleetPage(FleetCase):
    def chromium(self, *args):
        profile = os.path.join(self.tmp, "chromium-profile")
        result = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, "--user-data-dir=" + profile, *args],
            capture_output=True,
            text=True,
            timeout=90,
            env=child_env(),
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        return result.stdout

    def page_requests(self, netlog):
        """URLs the page itself asked for (chromium's own background requests left out)."""
        with open(netlog, encoding="utf8") as f:
            log = json.load(f)
        start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
        origin = self.base
        return [
            event["params"]["url"]
            for event in log["events"]
            if event["type"] == start_job and event.get("params", {}).get("initiator") == origin
        ]

    def test_stale_host_first_restarts_shown_no_foreign_request(self):
        self.start_fleet()
        self.allowed_log.append(r"d:crasher|d:fatal")  # their exits are logged, as they should be
        self.wait_fleet(
            lambda f: f.get("db-gone", {}).get("stats_age") is not None
            and self.restarts(f.get("db-alive", {"jobs": []}), "d:crasher") >= 2
            and {"name": "d:fatal", "state": "FATAL", "restarts": 1} in f["db-alive"]["jobs"],
            "both hosts sending stats, the crasher restarted, d:fatal FATAL",
        )
        self.gone.stop(signal.SIGKILL)  # gone without a word (a clean stop says "stopped")
        self.servers.remove(self.gone)
        self.wait_fleet(lambda f: f["db-gone"]["status"] == "stale", "db-gone stale")
        self.assertFalse(self.fleet()["db-alive"]["stale"])
        self.make_lag()
        self.wait_fleet(lambda f: (f["db-alive"]["logtail_lag"] or 0) >= 1000, "logtail lag")

        netlog = os.path.join(self.tmp, "netlog.json")
        dom = self.chromium("--log-net-log=" + netlog, "--dump-dom", self.base + "/fleet")
        parser = RowParser()
        parser.feed(dom)
        hosts = [row[0] for row in parser.rows]
        self.assertEqual(hosts[0], "db-gone", dom)  # stale hosts first
        self.assertIn("db-alive", hosts)
        gone = parser.rows[0]
        self.assertEqual(gone[1], "stale")
        self.assertIn("STALE", gone[2])
        alive = parser.rows[hosts.index("db-alive")]
        self.assertEqual(alive[1], "degraded")  # d:fatal is FATAL, d:crasher restarting
        self.assertEqual(alive[3], "alive")
        self.assertIn("DEGRADED", alive[2])
        self.assertIn("d:fatal: FATAL", alive[2])
        shown = int(alive[2].split("d:crasher: ")[1].split(" restarts")[0].split(", ")[-1])
        self.assertGreaterEqual(shown, 2, alive[2])
        self.assertIn("d:taskrunner: RUNNING, 0 restarts", alive[2])
        self.assertIn("1000 B", alive[2])  # the logtail's lag
        self.assertIn('<meta http-equiv="refresh"', dom)
        self.assertNotIn("<script", dom.lower())

        requests = self.page_requests(netlog)
        foreign = [url for url in requests if urlsplit(url).netloc != urlsplit(self.base).netloc]
        self.assertEqual(foreign, [])

        shot = os.path.join(self.tmp, "fleet.png")
        self.chromium("--window-size=1500,420", "--screenshot=" + shot, self.base + "/fleet")
        self.assertTrue(os.path.getsize(shot) > 1000)
        keep = os.environ.get("CC_FLEET_SCREENSHOT")
        if keep:  # how doc/fleet.png is made
            shutil.copy(shot, keep)


class TestFleetTruth(FleetCase):
    """/fleet.json of a real fleet: status from the jobs, a clean stop shows as stopped."""

    def test_degraded_by_its_jobs_and_stopped_when_stopped(self):
        self.start_fleet()
        self.allowed_log.append(r"d:crasher|d:fatal")
        fleet = self.wait_fleet(
            lambda f: f.get("db-gone", {}).get("state_age") is not None
            and any(j["state"] == "FATAL" for j in f.get("db-alive", {"jobs": []})["jobs"])
            and f,
            "db-gone reporting, d:fatal FATAL on db-alive",
        )
        self.assertEqual(fleet["db-alive"]["status"], "degraded")
        self.assertEqual(fleet["db-alive"]["cc"], "alive")
        self.assertEqual(fleet["db-gone"]["status"], "ok")
        self.alive.stop()  # cleanly: its jobs are stopped with it
        self.servers.remove(self.alive)
        row = self.wait_fleet(lambda f: f["db-alive"]["status"] == "stopped" and f["db-alive"],
                              "db-alive stopped")
        self.assertEqual({j["state"] for j in row["jobs"]}, {"STOPPED"})
        self.assertEqual(self.fleet()["db-gone"]["status"], "ok")


class TestFleetRows(unittest.TestCase):
    """cc.fleet without a server: staleness by each host's own period, jobs, counters."""

    def entry(self, host, job, received, period=30.0, state=None, counters=None):
        entry = StatsEntry(host, job)
        entry.stats_received = entry.received = received
        entry.period = period
        entry.counters = counters or {}
        if state is not None:
            entry.state, entry.state_received = state, received
        return entry

    def test_stale_by_own_period_first_and_counters_summed(self):
        now = 1000.0
        jobs = {"d:x": {"state": "BACKOFF", "restarts": 4}}
        server_state = {"role": "local", "version": "1.0", "jobs": jobs}
        counters = {"count.dropped": 2, "bytes.dropped": 999, "task.dropped_send": 1}
        counters.update({"count.invalid": 3, "count.invalid.bad-json": 3, "statswriter.invalid": 1})
        entries = [
            self.entry("fast", "fast", now - 4, period=1),  # 4 s > 3 x 1 s: stale
            self.entry("slow", "slow", now - 60, period=30, state=server_state),  # 60 < 90
            self.entry("slow", "slow.lt", now - 1, state={"lag_bytes": 7}, counters=counters),
        ]
        registrations = {"runner-only": {"age": 10.0, "period": 300.0, "version": "0.9"}}
        rows = fleet_rows(entries, registrations, now=now)
        # stale first, then degraded (slow's d:x backs off), then ok
        self.assertEqual([r["host"] for r in rows], ["fast", "slow", "runner-only"])
        fast, slow, runner = rows
        self.assertTrue(fast["stale"])
        self.assertFalse(runner["stale"])
        self.assertEqual(runner["version"], "0.9")
        self.assertFalse(slow["stale"])
        self.assertEqual(slow["status"], "degraded")  # d:x is backing off
        self.assertEqual((slow["role"], slow["version"]), ("local", "1.0"))
        self.assertEqual(slow["jobs"], [{"name": "d:x", "state": "BACKOFF", "restarts": 4}])
        self.assertEqual((slow["logtail_lag"], slow["drops"], slow["invalid"]), (7, 3, 4))
        self.assertEqual(slow["last_report_age"], 1.0)
        page = render_fleet(rows, "central <x>", now=now)
        self.assertIsNone(runner["registration_conflict"])
        self.assertIn("central &lt;x&gt;", page)
        self.assertIn('<tr class="stale" id="host-fast:fast">', page)
        self.assertIn('<span class="restarts">4 restarts</span>', page)

    def test_a_writer_that_cannot_write_is_shown(self):
        now = 1000.0
        error = {"code": "write-failed", "msg": "No space left <on> device", "since": 990.0}
        server_state = {"role": "remote", "h:tail": {"handler": "tailwriter", "write_error": error}}
        entries = [
            self.entry("central", "log", now - 1, state=server_state),
            self.entry("db1", "db1.d:logtail", now - 1, state={"writer_error": error}),
        ]
        central, db1 = fleet_rows(entries, {}, now=now)
        cannot = "h:tail cannot write: No space left <on> device"
        self.assertEqual(central["write_errors"], [cannot])
        self.assertEqual(db1["write_errors"], ["its writer refuses: No space left <on> device"])
        page = render_fleet([central, db1], "central", now=now)
        self.assertIn("h:tail cannot write: No space left &lt;on&gt; device", page)
        self.assertEqual([central["status"], db1["status"]], ["degraded", "degraded"])

    def test_two_ccs_on_one_machine_are_two_rows(self):
        now = 1000.0
        running = {"role": "local", "jobs": {"d:lt": {"state": "RUNNING", "restarts": 0}}}
        entries = [
            self.entry("db1", "cc1", now - 1, state=running),
            self.entry("db1", "cc1.d:lt", now - 1, counters={"count.dropped.queue_full": 2}),
            self.entry("db1", "cc2", now - 1, state={"role": "local"}),
            self.entry("db1", "cc2.d:lt", now - 1, counters={"dropped_tasks": 5}),
        ]
        rows = fleet_rows(entries, {"db1": {"age": 1.0}}, now=now)
        self.assertEqual([(r["host"], r["cc"], r["status"]) for r in rows],
                         [("db1", "cc1", "ok"), ("db1", "cc2", "ok")])
        self.assertEqual([r["reporting_jobs"] for r in rows],
                         [["cc1", "cc1.d:lt"], ["cc2", "cc2.d:lt"]])
        # queue_full is a drop; the taskrouter forgetting finished tasks is not
        self.assertEqual([r["drops"] for r in rows], [2, 0])
        self.assertEqual([r["registration_age"] for r in rows], [1.0, None])
        page = render_fleet(rows, "central", now=now)
        self.assertIn('id="host-db1:cc1"', page)
        self.assertIn('id="host-db1:cc2"', page)

    def test_a_host_that_stopped_cleanly_shows_its_jobs_stopped(self):
        now = 1000.0
        jobs = {"d:lt": {"state": "RUNNING", "restarts": 0}}
        entries = [self.entry("db1", "cc1", now - 900, state={"role": "local", "jobs": jobs,
                                                              "stopped": True})]
        (row,) = fleet_rows(entries, {}, now=now)
        self.assertEqual(row["status"], "stopped")
        self.assertEqual(row["jobs"], [{"name": "d:lt", "state": "STOPPED", "restarts": 0}])
        self.assertIn('<tr class="stopped" id="host-db1:cc1">', render_fleet([row], "c"))

class TestRegistrationConflict(unittest.TestCase):
    def test_a_host_two_runners_claim_is_shown(self):
        registrations = {"db1": {"age": 1.0, "conflict": "routes 01ab/02 and 03cd/04"}}
        rows = fleet_rows([], registrations, now=100.0)
        self.assertEqual(rows[0]["registration_conflict"], "routes 01ab/02 and 03cd/04")
        self.assertIn("two runners: routes 01ab/02 and 03cd/04", render_fleet(rows, "c", now=100.0))
