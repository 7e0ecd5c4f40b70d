"""The shipped Prometheus rules: valid YAML, and every metric they name is one /metrics exports."""

import os
import re

import yaml
from fleethosts import FleetCase
from harness import wait_for
from prometheus_client.parser import text_string_to_metric_families

RULES = os.path.join(os.path.dirname(__file__), "..", "conf", "prometheus", "cc-alerts.yml")
#: what the issue asks the rules to catch
WANTED = {
    "CcHostSilent",
    "CcDaemonRestarting",
    "CcLogtailLag",
    "CcMessagesDropped",
    "CcInvalidMessages",
}


def load_rules():
    with open(RULES, encoding="utf8") as f:
        doc = yaml.safe_load(f)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr):
    """The cc metric names in a PromQL expression."""
    return set(re.findall(r"\bcc_[a-zA-Z0-9_]+\b", expr))


class TestAlertRules(FleetCase):
    def test_rules_are_complete_and_well_formed(self):
        rules = load_rules()
        self.assertEqual({rule["alert"] for rule in rules}, WANTED)
        for rule in rules:
            self.assertTrue(metric_names(rule["expr"]), rule["alert"])
            self.assertEqual(rule["labels"]["severity"], "warning")
            self.assertTrue(rule["annotations"]["summary"], rule["alert"])
            # balanced parentheses and brackets: a typo would make Prometheus refuse the file
            for pair in ("()", "[]", "{}"):
                self.assertEqual(rule["expr"].count(pair[0]), rule["expr"].count(pair[1]))

    def test_every_metric_named_is_exported_by_a_running_server(self):
        self.start_fleet()
        self.allowed_log.append(r"d:crasher")
        self.make_lag()  # the logtail's unacknowledged fragment is dropped at the central cc
        junk = self.dealer(self.central.endpoint)
        junk.send_multipart([b"", b"not a type!", b"{}"])  # counted in count.invalid
        wanted = set().union(*(metric_names(rule["expr"]) for rule in load_rules()))

        def exported():
            text = self.get("/metrics")
            names = set()
            for family in text_string_to_metric_families(text):
                names.update(sample.name for sample in family.samples)
            return names

        def missing():
            return wanted - exported()

        try:
            wait_for(lambda: not missing(), timeout=20, what="every metric the rules name")
        except AssertionError:
            self.fail("not exported: %s" % sorted(missing()))
