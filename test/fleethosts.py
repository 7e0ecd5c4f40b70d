"""A small fleet for the fleet page and the alerting rules: a central cc and two hosts.

The central cc runs statswriter, taskrouter and metrics-http; ``db-alive`` runs
a daemon that keeps exiting, one that cannot start (FATAL), a logtail that lags
and a task runner; ``db-gone`` reports and is then stopped by the test.
"""

import json
import os

from harness import LOCAL_HTTP, TEST_DIR, CCTestCase, ccserver_section, wait_for

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

#: a host whose jobmgr runs a daemon that keeps exiting, one that goes FATAL, a logtail whose
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
daemons = d:crasher, d:fatal, d:logtail, d:taskrunner
keepalive-period = 0.5

[d:crasher]
script = {scripts}/crasher.sh
start-seconds = 0.1
restart-delay = 0.1
restart-delay-max = 0.3

[d:fatal]
script = /bin/false
start-retries = 2
restart-delay = 0.1

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
        scripts = os.path.join(TEST_DIR, "scripts")
        self.alive = self.start_server(
            "alive", ALIVE, central=self.central.endpoint, scripts=scripts
        )
        self.gone = self.start_server("gone", GONE, central=self.central.endpoint)

    def get(self, path):
        with LOCAL_HTTP.open(self.base + path, timeout=5) as response:
            return response.read().decode("utf8")

    def fleet(self):
        """The fleet's rows by host (each host here runs one cc)."""
        return {row["host"]: row for row in json.loads(self.get("/fleet.json"))["hosts"]}

    def wait_fleet(self, check, what):
        try:
            return wait_for(lambda: check(self.fleet()), timeout=20, what=what)
        except AssertionError as ex:
            raise AssertionError("%s; fleet: %s" % (ex, json.dumps(self.fleet()))) from None

    def make_lag(self):
        """Append to the tailed log: logtail sends it, nobody acknowledges, it lags."""
        with open(self.applog, "a", encoding="utf8") as f:
            f.write("x" * 999 + "\n")

    def restarts(self, row, job):
        return next((j["restarts"] for j in row["jobs"] if j["name"] == job), 0)
