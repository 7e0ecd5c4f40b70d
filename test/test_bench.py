"""cc-bench runs every scenario end to end and reports what it promises (tiny runs)."""

import json
import sys
import time

from harness import CCTestCase


class TestBench(CCTestCase):
    def bench(self, *args, load="python"):
        result = self.run_command(
            [sys.executable, "-m", "cctools.bench", *args, "--runs", "1", "--json"], timeout=120
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

    def test_fleet_ha_tiny(self):
        """Two hubs, shards, hub 1 killed: copies whole, every task answered once, a failover."""
        result = self.run_command(
            [sys.executable, "-m", "cctools.bench", "fleet", "--ha", "--hosts", "6",
             "--seconds", "8", "--idle", "20", "--json"],
            timeout=400,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout)
        steady, killed = report["runs"]
        self.assertFalse(steady["hub_killed"])
        self.assertTrue(killed["hub_killed"])
        for row in (steady, killed):
            self.assertEqual(row["tail_copies"]["byte_exact"], 6, row["tail_copies"])
            self.assertEqual(row["tail_copies"]["on_two_shards"], 0)
            self.assertEqual(row["tasks"]["unanswered"], 0, row["tasks"])
            self.assertEqual(row["tasks"]["answered_twice"], 0, row["tasks"])
            self.assertGreater(row["tasks"]["finished"], 0, row["tasks"])
        self.assertEqual(steady["by_type"]["pub.logtail"]["delivered"], 6 * 8)
        self.assertIsNotNone(killed["failover_s"])
        self.assertGreater(report["ping_cost"]["cpu_per_1000_hosts"], 0)

    def test_fleet_tiny(self):
        """A few hosts for two seconds, unsigned and signed: every message arrives."""
        result = self.run_command(
            [sys.executable, "-m", "cctools.bench", "fleet", "--hosts", "3,6", "--seconds", "2",
             "--idle", "30", "--json"],
            timeout=300,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        report = json.loads(result.stdout)
        servers = {"proxy", "logwriter", "tailwriter", "statswriter", "infowriter", "taskrouter"}
        self.assertEqual(set(report["modes"]), {"unsigned", "signed"})
        for mode, values in report["modes"].items():
            self.assertEqual([r["hosts"] for r in values["runs"]], [3, 6], mode)
            for row in values["runs"]:
                # 5 log.info + 1 pub.logtail + 1 pub.stats a second, a task.register, and
                # one pub.infofile: from the host whose minute starts within the run
                self.assertEqual(row["sent"], row["hosts"] * (1 + 2 * 7) + 1, mode)
                self.assertEqual(row["delivered"], row["sent"], mode)
                self.assertEqual(set(row["drops"]), servers | {"hosts"})
                self.assertEqual(sum(row["drops"].values()), 0, row["drops"])
                self.assertEqual(row["errors"], 0, row["first_error"])
                self.assertEqual(row["acks"], row["hosts"] * 2 + 1)  # logtail and infofile
                self.assertLessEqual(row["p50_ms"], row["p99_ms"])
                self.assertEqual(set(row["cpu"]), servers)
                self.assert_hosts_per_core(row, servers)
            self.assertEqual(set(values["sustained_hosts"]), servers)  # the counts depend on speed
        self.assertEqual(set(report["signed_cpu_vs_unsigned"]), {"3", "6"})

    def assert_hosts_per_core(self, row, servers):
        """Every role's CPU per host-second and hosts per core, over the steady window."""
        self.assertGreater(row["window_s"], 0)
        self.assertLessEqual(row["window_s"], row["seconds"])
        self.assertEqual(set(row["hosts_per_core"]), servers)
        self.assertEqual(set(row["cpu_s_per_host_s"]), servers)
        for name in servers:
            per_host, hosts = row["cpu_s_per_host_s"][name], row["hosts_per_core"][name]
            self.assertAlmostEqual(per_host, row["cpu"][name] / row["hosts"], msg=name)
            if per_host:  # a tiny run may cost a role less than a clock tick
                self.assertAlmostEqual(hosts * per_host, 1.0, msg=name)
            else:
                self.assertIsNone(hosts, name)
        self.assertGreaterEqual(row["load_cpu"], 0)
        self.assertNotIn("load", row["cpu"])  # the load generator is apart from the roles

    def test_fleet_keys_without_source_tree(self):
        """The signed fleet's keystore is made by the package, not test/pki.py."""
        import os
        import tempfile

        from cctools.bench.keys import make_keystore
        from cc.crypto import CryptoContext
        from cc.message import CCMessage

        with tempfile.TemporaryDirectory() as tmp:
            keys = make_keystore(os.path.join(tmp, "keys"), ("user1", "host2"))
            self.assertEqual(os.stat(os.path.join(keys, "private", "user1.key")).st_mode & 0o77, 0)
            sender = CryptoContext(keystore=keys, sign_name="host2")
            receiver = CryptoContext(keystore=keys, verify_ca=["ca"], time_window=600)
            msg = sender.seal(CCMessage.build("log.info", {"hostname": "h", "time": time.time()}))
            self.assertEqual(receiver.open(msg)["hostname"], "h")
