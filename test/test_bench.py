"""cc-bench runs every scenario end to end and reports what it promises (tiny runs)."""

import json
import os
import subprocess
import sys
import time
import unittest

from harness import WAIT, CCTestCase, ccserver_section


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

    @unittest.skipUnless(os.environ.get("CC_TEST_LONG"), "90 s: make test-long (test_failover"
                         " covers the failover itself)")
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

    def test_fleet_load_resends_refused_fragments_in_order(self):
        """Regression: the fleet's C load never sent a refused pub.logtail fragment again, so
        after one busy answer every later fragment of that host was refused as a gap and its
        copy stopped there.  A tailwriter taking one fragment at a time (queue-bytes = 1) gets
        a burst of 8 hosts x 6 fragments: every copy must end whole, as with logtail."""
        from cc.message import CCMessage
        from cctools.bench.cload import build_c_load
        from cctools.bench.scenarios.fleet import TAIL_BLOB, Message, make_fields, write_schedule

        load = build_c_load(self.tmp)
        self.assertIsNotNone(load, "the C load needs a compiler (.ci/run installs gcc)")
        dst = os.path.join(self.tmp, "tails")
        writer = self.start_server(
            "w", ccserver_section("w") + "[routes]\npub.logtail = h:tail\n\n[h:tail]\n"
            "handler = tailwriter\ndstdir = %s\nqueue-bytes = 1\n" % dst
        )  # fmt: skip
        hosts, fragments = 8, 6
        msgs = []
        for second in range(fragments):  # all due at once, each host's in file order
            for host in range(hosts):
                fields, blob = make_fields(1, host, second, second, 0.0)
                msg = CCMessage.build("pub.logtail", fields, blob=blob)
                msgs.append(Message(0, host, 1, list(msg.frames)))
        path = os.path.join(self.tmp, "schedule")
        write_schedule(path, hosts, msgs)
        out = subprocess.run([load, "fleet", writer.endpoint, path, "20000"],
                             capture_output=True, text=True, timeout=WAIT * 4)  # fmt: skip
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        self.assertEqual(lines[:2], ["start", "sent"])
        copies = sorted(os.listdir(dst))
        self.assertEqual(len(copies), hosts + 1, copies)  # and the writer's map
        for name in copies[1:]:
            with open(os.path.join(dst, name), "rb") as f:
                self.assertEqual(f.read(), TAIL_BLOB * fragments, name)
        result = json.loads(lines[2])
        self.assertGreater(result["tail_busy"], 0)  # 48 at once never fit one queued fragment
        self.assertEqual(result["tail_not_resent"], 0)
        self.assertEqual(result["errors"], 0, result["first_error"])
        self.assertEqual(result["acks"], hosts * fragments)
        self.assertEqual(result["tail_resent"], result["tail_busy"] + result["tail_gap"])

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
                self.assertEqual(set(row["cpu_zmq_io"]), servers)
                self.assert_hosts_per_core(row, servers)
            self.assertEqual(set(values["sustained_hosts"]), servers)  # the counts depend on speed
        self.assertEqual(set(report["signed_cpu_vs_unsigned"]), {"3", "6"})

    def test_fleet_c_router_bar(self):
        """--proxy c: the C router stands in for the proxy and delivers everything; the
        share of each server's CPU in libzmq's I/O threads is reported."""
        result = self.run_command(
            [sys.executable, "-m", "cctools.bench", "fleet", "--hosts", "4", "--seconds", "2",
             "--modes", "unsigned", "--proxy", "c", "--idle", "30", "--json"],
            timeout=300,
        )  # fmt: skip
        self.assertEqual(result.returncode, 0, result.stderr)
        row = json.loads(result.stdout)["modes"]["unsigned"]["runs"][0]
        self.assertEqual(row["proxy"], "c")
        self.assertEqual(row["delivered"], row["sent"])
        self.assertEqual(row["acks"], row["hosts"] * 2 + 1)  # replies relayed back
        for name, share in row["cpu_zmq_io"].items():
            self.assertLessEqual(share, row["cpu"][name] + 0.05, name)  # a part of the whole

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
