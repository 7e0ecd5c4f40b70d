"""The fleet page, rendered by a real headless browser: stale hosts, restarts, no foreign requests.

Needs Debian's ``chromium`` (``.ci/run`` installs it); skipped with a message where it is absent.
"""

import html.parser
import json
import os
import shutil
import subprocess
import unittest
import urllib.request
from urllib.parse import urlsplit

from harness import CCTestCase, ccserver_section, child_env, wait_for

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
]

CENTRAL = ccserver_section("central", metrics_http="127.0.0.1:0", hostname="cc-central") + """
[routes]
pub.stats = h:stats
pub.state = h:stats
task = h:taskrouter

[h:stats]
handler = statswriter
dstdir = {tmp}/stats

[h:taskrouter]
handler = taskrouter
"""

#: a host whose jobmgr runs a daemon that keeps exiting, a logtail whose
#: fragments nobody acknowledges (it lags, the central cc drops them) and a task runner
ALIVE = ccserver_section("alive", role="local", hostname="db-alive", state_period="0.3") + """
[routes]
pub = h:proxy
task = h:proxy
job = h:jobmgr

[h:proxy]
handler = proxy
remote-cc = {central}

[h:jobmgr]
handler = jobmgr
daemons = d:crasher, d:logtail, d:taskrunner
keepalive-period = 0.5

[d:crasher]
script = /bin/false
restart-delay = 0.1
restart-delay-max = 0.3

[d:logtail]
module = cc.daemon.logtail
logdir = {tmp}/src
logmask = app-*.log
state-file = {tmp}/logtail.save
stats-period = 0.2
state-period = 0.3
ack-timeout = 30
poll-period = 0.05

[d:taskrunner]
module = cc.daemon.taskrunner
reg-period = 0.5
stats-period = 0.2

[cc.task.sample]
"""

#: a host that reports and then stops
GONE = ccserver_section("gone", role="local", hostname="db-gone") + """
[routes]
pub = h:proxy

[h:proxy]
handler = proxy
remote-cc = {central}
"""


class FleetCase(CCTestCase):
    """A central cc with statswriter, taskrouter and metrics-http, and two hosts reporting to it."""

    def start_fleet(self):
        os.makedirs(os.path.join(self.tmp, "src"))
        self.applog = os.path.join(self.tmp, "src", "app-1.log")
        with open(self.applog, "w", encoding="utf8") as f:
            f.write("start\n")
        self.central = self.start_server("central", CENTRAL)
        port = self.central.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics").group(1)
        self.base = "http://127.0.0.1:%s" % port
        self.alive = self.start_server("alive", ALIVE, central=self.central.endpoint)
        self.gone = self.start_server("gone", GONE, central=self.central.endpoint)

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            return response.read().decode("utf8")

    def fleet(self):
        return {row["host"]: row for row in json.loads(self.get("/fleet.json"))["hosts"]}

    def wait_fleet(self, check, what):
        try:
            return wait_for(lambda: check(self.fleet()), timeout=20, what=what)
        except AssertionError:
            print(json.dumps(self.fleet(), indent=1))
            raise

    def make_lag(self):
        """Append to the tailed log: logtail sends it, nobody acknowledges, it lags."""
        with open(self.applog, "a", encoding="utf8") as f:
            f.write("x" * 999 + "\n")

    def restarts(self, row, job):
        return next((j["restarts"] for j in row["jobs"] if j["name"] == job), 0)


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
