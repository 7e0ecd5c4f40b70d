"""discovery: finds a real PostgreSQL cluster, notices it stop; the host probe reports."""

import os
import unittest

import pgcluster
from daemonproc import DaemonTestCase
from harness import ccserver_section, wait_for

from cc.message import CCMessage

LOCAL = ccserver_section("local", role="local") + """
[routes]
pub.discovery = h:proxy
log = h:dispose

[h:proxy]
handler = proxy
remote-cc = {sink}

[h:dispose]
handler = disposer

[d:discovery]
probes = postgresql, host
check-period = 0.2
discovery-connect = user=postgres dbname=postgres
"""

PG = None


def setUpModule():
    global PG
    PG = pgcluster.shared_cluster()
    if not PG.can_restart:
        PG.destroy()
        raise unittest.SkipTest("discovery needs a local cluster it can stop")


def tearDownModule():
    if PG is not None:
        PG.destroy()


class TestDiscovery(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.sink, self.sink_url = self.make_sink()

    def next_discovery(self, check):
        def one():
            msg = CCMessage(self.recv(self.sink, 30))
            body = msg.get_body()
            return msg.type == "pub.discovery" and check(body) and body

        return wait_for(one, 30, "a matching pub.discovery")

    def ours(self, body):
        datadir = os.path.realpath(PG.datadir)
        for cluster in body["probes"]["postgresql"]:
            if os.path.realpath(cluster["data_directory"]) == datadir:
                return cluster
        return None

    def test_finds_cluster_and_notices_it_stop(self):
        local = self.start_server("local", LOCAL, sink=self.sink_url)
        proc = self.start_daemon(local, "discovery", "d:discovery")
        body = self.next_discovery(self.ours)
        cluster = self.ours(body)
        self.assertEqual(cluster["port"], PG.port)
        self.assertEqual(cluster["socket_dir"], PG.tmpdir)
        self.assertEqual(cluster["version"], os.path.basename(os.path.dirname(PG.bindir)))
        names = [db["name"] for db in cluster["databases"]]
        self.assertIn("cctest", names)
        self.assertTrue(all(db["size_bytes"] > 0 for db in cluster["databases"]))
        host = body["probes"]["host"]
        self.assertGreater(host["cpus"], 0)
        self.assertGreater(host["memory_bytes"], 0)
        self.assertTrue(host["kernel"])
        self.assertTrue(any(d["mountpoint"] == "/" for d in host["disks"]))
        PG.stop()
        try:
            changed = self.next_discovery(lambda b: not self.ours(b))
            self.assertIn("postgresql", changed["changed"])
        finally:
            PG.start()
        self.assertEqual(proc.stop(), 0)

    def test_unknown_probe_is_a_config_error(self):
        local = self.start_server(
            "local", LOCAL.replace("postgresql, host", "postgresql, nosuch"), sink=self.sink_url
        )
        proc = self.start_daemon(local, "discovery", "d:discovery")
        proc.expected_exit = 1
        self.assertEqual(proc.proc.wait(10), 1)
