"""cc-bench runs every scenario end to end and reports what it promises (tiny runs)."""

import json
import sys

from harness import CCTestCase


class TestBench(CCTestCase):
    def bench(self, *args, load="python"):
        result = self.run_command(
            [sys.executable, "-m", "cc.bench", *args, "--runs", "1", "--json"], timeout=120
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual(report["load"], load)
        return report["summary"]

    def test_forward_all_targets(self):
        """The C sender and sink (the machine has a compiler: .ci/run installs gcc)."""
        summary = self.bench("forward", "--messages", "3000", "--senders", "2", load="c")
        self.assertEqual(set(summary), {"cc", "zmqproxy", "stock", "direct"})
        for target, values in summary.items():
            self.assertEqual(values["lost"], 0, target)
            self.assertGreater(values["rate"], 0, target)
        cc = summary["cc"]
        self.assertEqual(cc["dropped"], 0)
        for key in ("cpu_us_per_msg", "rss_mb", "vs_zmqproxy", "vs_stock"):
            self.assertGreater(cc[key], 0, key)

    def test_twohop_and_echo(self):
        summary = self.bench("twohop", "--messages", "2000", "--load", "python")
        self.assertEqual(summary["cc"]["lost"], 0)
        summary = self.bench("echo", "--messages", "300")
        for target in ("cc", "zmqproxy"):
            self.assertEqual(summary[target]["count"], 300)
            self.assertLessEqual(summary[target]["p50"], summary[target]["p99"])
