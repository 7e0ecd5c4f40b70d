"""metrics-http: /metrics parses as Prometheus text, moves with traffic; /status is JSON."""

import json
import subprocess
import unittest

from daemonproc import DaemonTestCase
from harness import LOCAL_HTTP, ccserver_section, wait_for
from prometheus_client.parser import text_string_to_metric_families

from cc.message import HOSTNAME, CCMessage
from cc import counters
from cc.metrics import MetricsRenderer, render_metrics
from cc.statsstore import StatsStore

CENTRAL = ccserver_section("central", metrics_http="127.0.0.1:0") + """
[routes]
pub.stats = h:stats
pub.state = h:stats
x = h:dispose

[h:stats]
handler = statswriter
dstdir = {tmp}/stats

[h:dispose]
handler = disposer
"""

LOCAL = ccserver_section("local", role="local") + """
[routes]
pub = h:proxy
log = h:proxy

[h:proxy]
handler = proxy
remote-cc = {central}

[d:stats]
stats-period = 0.2
echo-timeout = 1
"""


PROXY = ccserver_section("proxy", role="proxy", metrics_http="127.0.0.1:0") + """
[routes]
pub = h:proxy

[h:proxy]
handler = proxy
remote-cc = {central}
"""

LOCAL_METRICS = LOCAL.replace("role = local", "role = local\nmetrics-http = 127.0.0.1:0")


class TestMetrics(DaemonTestCase):
    def fetch(self, server, page):
        url = "http://%s/%s" % (server.wait_log(r"metrics on http://(\S+)/metrics").group(1), page)
        with LOCAL_HTTP.open(url, timeout=5) as resp:
            return resp.headers.get("Content-Type"), resp.read().decode("utf8")

    def samples(self, server):
        ctype, text = self.fetch(server, "metrics")
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        result = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = dict(sample.labels)
                host, job = labels.pop("host"), labels.pop("job")
                result[(sample.name, host, job) + tuple(sorted(labels.items()))] = sample.value
        return result

    def value(self, server, counter, job):
        """The exported value of dotted ``counter`` of ``job``, as the catalog maps it."""
        found = counters.lookup(counter)
        family, labels = (
            (counters.UNDECLARED, (("counter", counter),)) if found is None  # a plug-in's
            else (found[0].family, found[1])
        )
        return self.samples(server).get((family, HOSTNAME, job) + labels, 0)

    def promtool_check(self, server):
        """``promtool check metrics`` on the server's /metrics: its complaints, if any."""
        text = self.fetch(server, "metrics")[1]
        done = subprocess.run(
            ["promtool", "check", "metrics"], input=text, capture_output=True, text=True
        )
        return done.returncode, done.stdout + done.stderr

    def test_metrics_parse_and_move_with_traffic(self):
        central = self.start_server("central", CENTRAL)
        local = self.start_server("local", LOCAL, central=central.endpoint)
        proc = self.start_daemon(local, "plugins.echodaemon", "d:stats")
        before = self.value(central, "disposed_count", "central")
        sock = self.dealer(central.endpoint)
        for _ in range(25):
            sock.send_multipart(CCMessage.build("x.y", {}).frames)
        wait_for(
            lambda: self.value(central, "disposed_count", "central") >= before + 25,
            what="central's disposed_count to grow by 25",
        )
        # the local cc's and the daemon's counters arrive with pub.stats, and grow
        first = wait_for(lambda: self.value(central, "count", "local"), what="local's count")
        wait_for(lambda: self.value(central, "count", "local") > first, what="local's count grows")
        wait_for(lambda: self.value(central, "echo.asked", "local.d:stats"), what="daemon")
        samples = self.samples(central)
        self.assertGreater(samples[("cc_start_time_seconds", HOSTNAME, "local")], 0)
        self.assertGreater(samples[("cc_report_time_seconds", HOSTNAME, "local.d:stats")], 0)
        # cc's own counters are all in the catalog: only the test plug-in's are undeclared
        undeclared = {key for key in samples if key[0] == counters.UNDECLARED}
        self.assertEqual({dict([key[3]])["counter"] for key in undeclared}, {"echo.asked"})
        self.assertEqual(proc.stop(), 0)

    def test_promtool_finds_nothing_to_lint_on_any_role(self):
        central = self.start_server("central", CENTRAL)
        proxy = self.start_server("proxy", PROXY, central=central.endpoint)
        local = self.start_server("local", LOCAL_METRICS, central=proxy.endpoint)
        self.allowed_log.append(r"dropping msg, no route")
        for server in (central, proxy, local):
            sock = self.dealer(server.endpoint)
            sock.send_multipart(CCMessage.build("nowhere", {}).frames)
            sock.send_multipart([b"", b"not a type!", b"{}"])
            server.wait_stat("count.invalid")
        wait_for(lambda: self.value(central, "count", "local"), what="local's report")
        for server in (central, proxy, local):
            self.assertEqual(self.promtool_check(server), (0, ""), server.name)

    def test_drops_and_invalid_messages_start_at_zero(self):
        """Every known reason and code is there at 0 before the first: increase() sees it."""
        central = self.start_server("central", CENTRAL)
        samples = self.samples(central)
        for reason in counters.KNOWN_VALUES["reason"] + ("no_route",):
            key = ("cc_messages_dropped_total", HOSTNAME, "central", ("reason", reason))
            self.assertEqual(samples[key], 0, reason)
        for code in counters.KNOWN_VALUES["code"]:
            key = ("cc_messages_invalid_total", HOSTNAME, "central", ("code", code))
            self.assertEqual(samples[key], 0, code)
        self.allowed_log.append(r"dropping msg, no route")
        self.dealer(central.endpoint).send_multipart(CCMessage.build("nowhere", {}).frames)
        wait_for(lambda: self.value(central, "count.dropped", "central") == 1, what="a drop")
        status = json.loads(self.fetch(central, "status")[1])
        self.assertEqual(status["by_kind"]["drop"], 1)
        self.assertEqual(self.value(central, "count.dropped.queue_full", "central"), 0)

    def test_odd_states_leave_the_fleet_page_working(self):
        """A pub.state whose jobs or lag are not what cc sends: shown without them, not a 500."""
        central = self.start_server("central", CENTRAL)
        sock = self.dealer(central.endpoint)
        odd = [("h-list", {"jobs": ["a"], "role": "local"}), ("h-text", {"lag_bytes": "12"})]
        for host, state in odd:
            fields = {"job_name": "j", "service_type": "x", "hostname": host, "state": state}
            sock.send_multipart(CCMessage.build("pub.state", fields).frames)
        central.wait_stat("statswriter.state", 2)
        rows = {
            row["host"]: row for row in json.loads(self.fetch(central, "fleet.json")[1])["hosts"]
        }
        self.assertEqual(rows["h-list"]["jobs"], [])
        self.assertIsNone(rows["h-text"]["logtail_lag"])
        self.assertIn("h-text", self.fetch(central, "fleet")[1])

    def test_status_page(self):
        central = self.start_server("central", CENTRAL)
        local = self.start_server("local", LOCAL, central=central.endpoint)

        def local_seen():
            status = json.loads(self.fetch(central, "status")[1])
            jobs = status["hosts"].get(HOSTNAME, {})
            return status if jobs.get("local", {}).get("state") else None

        status = wait_for(local_seen, what="local's state on /status")
        self.assertEqual(status["job_name"], "central")
        self.assertEqual(status["state"]["routes"]["x"], ["h:dispose"])
        self.assertEqual(status["hosts"][HOSTNAME]["local"]["state"]["state"]["role"], "local")
        self.assertIn("count", status["totals"])
        self.assertEqual(set(status["by_kind"]), {kind.value for kind in counters.Kind})
        local.stop()

    def test_bad_address_is_a_config_error(self):
        ini = ccserver_section("central", metrics_http="127.0.0.1:nope") + "[routes]\n"
        out = self.start_failing("central", ini)
        self.assertIn("cannot start: metrics-http = 127.0.0.1:nope", out)


class TestMetricsRenderer(unittest.TestCase):
    """Loop-free: what a scrape renders again (the render runs on the server's loop)."""

    def report(self, store, host, job, totals):
        body = {"hostname": host, "job_name": job, "counters": {}, "totals": totals}
        store.update("pub.stats", dict(body, period=30, time=1e9))

    def test_a_job_text_is_made_again_only_after_its_next_report(self):
        """Regression: every scrape formatted every job's zero-filled series again (about 40
        lines a job, 2-3 times the render time of 1000 hosts x 3 jobs); a job's text is
        now kept until its next report, and reads the same as one made from scratch."""
        store = StatsStore()
        for n in range(3):
            self.report(store, "db%d" % n, "cc", {"count": n, "count.dropped.peer_full": n})
        own = ("central", "central", {"count": 1.0}, 1e9)
        renderer = MetricsRenderer()
        first = renderer.render(own, store)
        self.assertEqual(first, render_metrics(own, store))
        kept = dict(renderer._jobs)
        self.report(store, "db1", "cc", {"count": 7, "count.invalid.replay": 1})
        second = renderer.render(own, store)
        self.assertEqual(second, render_metrics(own, store))
        self.assertIn('cc_messages_invalid_total{host="db1",job="cc",code="replay"} 1.0', second)
        self.assertIn('cc_messages_invalid_total{host="db2",job="cc",code="replay"} 0.0', second)
        self.assertIn('cc_messages_dropped_total{host="db1",job="cc",reason="peer_full"} 0.0',
                      second)  # fmt: skip
        for key in [("db0", "cc"), ("db2", "cc")]:
            self.assertIs(renderer._jobs[key][1], kept[key][1], key)  # not made again
        self.assertIsNot(renderer._jobs[("db1", "cc")][1], kept[("db1", "cc")][1])
        for family in text_string_to_metric_families(second):  # and it still parses
            self.assertTrue(family.samples)
