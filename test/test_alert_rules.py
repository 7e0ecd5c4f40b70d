"""The shipped Prometheus rules, tested the way Prometheus users test them.

``promtool test rules`` unit tests for every rule (and, generated from the
counter catalog, one per drop reason and invalid code), and a real
Prometheus (Debian's ``prometheus``; ``.ci/run`` installs it) that scrapes a
real fleet with the shipped ``prometheus.yml`` and rules and sees each alert
become pending.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.parse

import yaml
from fleethosts import FleetCase
from harness import LOCAL_HTTP, ccserver_section, wait_for

from cc import counters
from cc.message import CCMessage

CONF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conf", "prometheus")
RULES = os.path.join(CONF, "cc-alerts.yml")
EXAMPLE = os.path.join(CONF, "prometheus.yml")
UNIT_TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prometheus",
                          "cc-alerts_test.yml")
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
NEEDS_PROMETHEUS = unittest.skipUnless(
    os.access(PROMETHEUS, os.X_OK) and os.access(PROMTOOL, os.X_OK),
    "prometheus not installed: apt-get install prometheus (.ci/run does)",
)


def load_yaml(path):
    with open(path, encoding="utf8") as f:
        return yaml.safe_load(f)


def alert_names():
    return {rule["alert"] for group in load_yaml(RULES)["groups"] for rule in group["rules"]}


def promtool(*args, cwd=None):
    done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd)
    return done.returncode, done.stdout + done.stderr


@NEEDS_PROMETHEUS
class TestRuleUnitTests(unittest.TestCase):
    def test_rules_and_example_config_are_valid(self):
        code, out = promtool("check", "rules", RULES)
        self.assertEqual(code, 0, out)
        config = load_yaml(EXAMPLE)
        config["rule_files"] = [RULES]
        path = os.path.join(self.tmpdir(), "prometheus.yml")
        with open(path, "w", encoding="utf8") as f:
            yaml.safe_dump(config, f)
        code, out = promtool("check", "config", path)
        self.assertEqual(code, 0, out)
        (scrape,) = config["scrape_configs"]
        self.assertIs(scrape["honor_labels"], True)  # cc's host and job labels are kept

    def tmpdir(self):
        path = tempfile.mkdtemp(prefix="cctest-")
        self.addCleanup(shutil.rmtree, path)
        return path

    def test_every_rule_passes_its_unit_tests(self):
        code, out = promtool("test", "rules", os.path.basename(UNIT_TESTS),
                             cwd=os.path.dirname(UNIT_TESTS))
        self.assertEqual(code, 0, out)
        tested = {
            case["alertname"]
            for test in load_yaml(UNIT_TESTS)["tests"]
            for case in test.get("alert_rule_test", ())
            if case["exp_alerts"]
        }
        self.assertEqual(tested, alert_names(), "a rule no unit test makes fire")

    def test_every_drop_reason_and_invalid_code_alerts(self):
        """One series per known reason and code, at 0 then 1: each its own pending alert."""
        series = {
            "CcMessagesDropped": [s for s in counters.ZERO_SERIES
                                  if s[0] == "cc_messages_dropped_total"],
            "CcInvalidMessages": [s for s in counters.ZERO_SERIES
                                  if s[0] == "cc_messages_invalid_total"],
        }
        tests = []
        for alert, rows in series.items():
            (label,) = {name for _, labels in rows for name, _ in labels}
            tests.append({
                "interval": "1m",
                "input_series": [
                    {"series": "%s{host=\"h\",job=\"j\",%s}" % (family, ",".join(
                        '%s="%s"' % kv for kv in labels)), "values": "0 0 1 1 1"}
                    for family, labels in rows
                ],
                "promql_expr_test": [{
                    "expr": 'count by (%s) (ALERTS{alertname="%s"})' % (label, alert),
                    "eval_time": "3m",
                    "exp_samples": [{"labels": "{%s=\"%s\"}" % labels[0], "value": 1}
                                    for _, labels in rows],
                }],
            })
        self.assertGreater(len(tests[0]["input_series"]), 10)
        path = os.path.join(self.tmpdir(), "generated_test.yml")
        with open(path, "w", encoding="utf8") as f:
            yaml.safe_dump({"rule_files": [RULES], "evaluation_interval": "1m",
                            "tests": tests}, f)
        code, out = promtool("test", "rules", path)
        self.assertEqual(code, 0, out)


#: a cc whose proxy has nowhere to go: what is sent through it fills its queue and is dropped
LONELY = ccserver_section("lonely", role="local", hostname="db-lonely") + """
[routes]
pub = h:proxy
x = h:nowhere

[h:proxy]
handler = proxy
remote-cc = {central}

[h:nowhere]
handler = proxy
remote-cc = ipc://{tmp}/nobody-listens
zmq_hwm = 5
queue-bytes = 1k
"""

#: (alert, labels it must have) that the fleet below makes pending
EXPECTED = [
    ("CcHostSilent", {"host": "db-gone"}),
    ("CcDaemonRestarting", {"host": "db-alive", "daemon": "d:crasher"}),
    ("CcDaemonFatal", {"host": "db-alive", "daemon": "d:fatal"}),
    ("CcLogtailLag", {"host": "db-alive", "job": "alive.d:logtail"}),
    ("CcMessagesDropped", {"host": "cc-central", "job": "central", "reason": "no_route"}),
    ("CcMessagesDropped", {"host": "db-lonely", "job": "lonely", "reason": "queue_full"}),
    ("CcInvalidMessages", {"host": "cc-central", "job": "central", "code": "bad-type"}),
]


@NEEDS_PROMETHEUS
class TestPrometheusSeesTheAlerts(FleetCase):
    def start_prometheus(self, targets):
        """Debian's Prometheus with the shipped example config, intervals of a second."""
        config = load_yaml(EXAMPLE)
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        config["rule_files"] = [RULES]
        config["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
        path = os.path.join(self.tmp, "prometheus.yml")
        with open(path, "w", encoding="utf8") as f:
            yaml.safe_dump(config, f)
        log_path = os.path.join(self.tmp, "prometheus.log")
        log = open(log_path, "w", encoding="utf8")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                "--config.file=" + path,
                "--storage.tsdb.path=" + os.path.join(self.tmp, "tsdb"),
                "--web.listen-address=127.0.0.1:0",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.addCleanup(self.stop_prometheus, proc)

        def listening():
            assert proc.poll() is None, "prometheus exited: %s" % open(log_path).read()[-2000:]
            found = re.search(r'msg="Listening on" address=(\S+)', open(log_path).read())
            return found and found.group(1)

        base = "http://%s" % wait_for(listening, timeout=30, what="prometheus to listen")

        def ready():  # 503 until its storage is open
            try:
                with LOCAL_HTTP.open(base + "/-/ready", timeout=5) as response:
                    return response.status == 200
            except urllib.error.HTTPError as ex:
                if ex.code != 503:
                    raise
                return False

        wait_for(ready, timeout=30, what="prometheus to be ready")
        return base

    def stop_prometheus(self, proc):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def api(self, base, path, **params):
        url = "%s/api/v1/%s?%s" % (base, path, urllib.parse.urlencode(params))
        with LOCAL_HTTP.open(url, timeout=5) as response:
            return json.load(response)["data"]

    def test_each_alert_becomes_pending(self):
        self.assertEqual({name for name, _ in EXPECTED}, alert_names(), "a rule not driven here")
        self.start_fleet()
        self.allowed_log.extend([r"d:crasher|d:fatal", r"dropping msg, no route",
                                 r"message dropped \(queue_full\)"])
        lonely = self.start_server("lonely", LONELY, central=self.central.endpoint)
        central_http = self.base.split("//", 1)[1]
        base = self.start_prometheus([central_http])
        # every drop and invalid series is there at 0 before the first: increase() sees it
        wait_for(lambda: self.api(base, "query", query='cc_messages_dropped_total'
                                  '{job="central",reason="no_route"} == 0')["result"],
                 timeout=30, what="the first scrape, the drop counter at 0")
        wait_for(lambda: self.fleet().get("db-lonely"), timeout=30, what="db-lonely reporting")

        sock = self.dealer(self.central.endpoint)
        sock.send_multipart(CCMessage.build("nowhere.at.all", {}).frames)  # no route
        sock.send_multipart([b"", b"not a type!", b"{}"])  # invalid: bad-type
        to_lonely = self.dealer(lonely.endpoint)
        for _ in range(100):  # more than the dead link's queue holds
            to_lonely.send_multipart(CCMessage.build("x.y", {}).frames)
        with open(self.applog, "r+b") as f:  # 65 MiB nobody acknowledges: the logtail lags
            f.truncate(65 * 1024 * 1024)
        self.gone.stop(signal.SIGKILL)  # silent from now on
        self.servers.remove(self.gone)

        def active():
            alerts = self.api(base, "alerts")["alerts"]
            return [(a["labels"], a["state"]) for a in alerts]

        def missing():
            seen = active()
            return [
                (name, labels) for name, labels in EXPECTED
                if not any(got.get("alertname") == name and labels.items() <= got.items()
                           and state in ("pending", "firing") for got, state in seen)
            ]

        try:
            wait_for(lambda: not missing(), timeout=60, what="every alert pending")
        except AssertionError:
            self.fail("not pending: %s\nactive: %s" % (missing(), active()))
        # honor_labels: the job is cc's, not the scrape job's
        jobs = {got.get("job") for got, _ in active()}
        self.assertNotIn("cc", jobs)
        self.assertFalse(any("exported_job" in got for got, _ in active()))
