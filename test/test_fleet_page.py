"""The fleet page, rendered by a real headless browser: stale hosts, restarts, no foreign requests.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped with a message where it is absent.
"""

import html.parser
import json
import os
import shutil
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
    """The ``<tr id=host-...>`` rows of the page: (id, class, text), in order."""

    def __init__(self):
        super().__init__()
        self.rows = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and (attrs.get("id") or "").startswith("host-"):
            self.rows.append([attrs["id"][5:], attrs.get("class"), ""])

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
        self.allowed_log.append(r"d:crasher")  # its exits are logged, as they should be
        self.wait_fleet(
            lambda f: f.get("db-gone", {}).get("stats_age") is not None
            and self.restarts(f.get("db-alive", {"jobs": []}), "d:crasher") >= 2,
            "both hosts sending stats, the crasher restarted",
        )
        self.gone.stop()
        self.servers.remove(self.gone)
        self.wait_fleet(lambda f: f["db-gone"]["stale"], "db-gone stale")
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
        self.assertEqual(alive[1], "ok")
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
        self.assertEqual([r["host"] for r in rows], ["fast", "runner-only", "slow"])
        fast, runner, slow = rows
        self.assertTrue(fast["stale"])
        self.assertFalse(runner["stale"])
        self.assertEqual(runner["version"], "0.9")
        self.assertFalse(slow["stale"])
        self.assertEqual((slow["role"], slow["version"]), ("local", "1.0"))
        self.assertEqual(slow["jobs"], [{"name": "d:x", "state": "BACKOFF", "restarts": 4}])
        self.assertEqual((slow["logtail_lag"], slow["drops"], slow["invalid"]), (7, 3, 4))
        self.assertEqual(slow["last_report_age"], 1.0)
        page = render_fleet(rows, "central <x>", now=now)
        self.assertIsNone(runner["registration_conflict"])
        self.assertIn("central &lt;x&gt;", page)
        self.assertIn('<tr class="stale" id="host-fast">', page)
        self.assertIn('<span class="restarts">4 restarts</span>', page)


class TestRegistrationConflict(unittest.TestCase):
    def test_a_host_two_runners_claim_is_shown(self):
        registrations = {"db1": {"age": 1.0, "conflict": "routes 01ab/02 and 03cd/04"}}
        rows = fleet_rows([], registrations, now=100.0)
        self.assertEqual(rows[0]["registration_conflict"], "routes 01ab/02 and 03cd/04")
        self.assertIn("two runners: routes 01ab/02 and 03cd/04", render_fleet(rows, "c", now=100.0))
