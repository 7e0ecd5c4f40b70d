"""Sharding: a hub spreads pub.infofile over infowriters by the host a message comes from."""

import os
import re
import signal
import unittest

from harness import CCTestCase, ccserver_section, read_file, wait_for
from test_failover import restart_on_its_endpoint

from cc.message import CCMessage
from cc.rendezvous import owner, ranking

WRITER = """
[routes]
pub.infofile = h:info
echo = h:echo

[h:info]
handler = infowriter
dstdir = {tmp}/{wname}
host-subdirs = yes

[h:echo]
handler = echo
"""

HUB = ccserver_section("hub", role="proxy") + """
[routes]
pub.infofile = h:writers

[h:writers]
handler = proxy
shards = {shards}
ping-period = 0.2
{extra}
"""

HOSTS = ["db%02d" % i for i in range(24)]


class TestRendezvous(unittest.TestCase):
    def test_a_new_shard_takes_only_hosts_it_ranks_first(self):
        hosts = ["host%d" % i for i in range(3000)]
        two = ["tcp://w1:1", "tcp://w2:1"]
        three = two + ["tcp://w3:1"]
        before = {h: two[owner(h, two)] for h in hosts}
        after = {h: three[owner(h, three)] for h in hosts}
        moved = [h for h in hosts if before[h] != after[h]]
        self.assertTrue(all(after[h] == "tcp://w3:1" for h in moved))
        self.assertTrue(800 < len(moved) < 1200, len(moved))  # about a third
        self.assertEqual([ranking(h, three)[0] for h in hosts], [owner(h, three) for h in hosts])

    def test_the_order_of_the_list_does_not_matter(self):
        shards = ["tcp://a:1", "tcp://b:1", "tcp://c:1"]
        back = shards[::-1]
        for host in ("x", "y", "db17", ""):
            self.assertEqual(shards[owner(host, shards)], back[owner(host, back)])


class TestSharding(CCTestCase):
    def writer(self, name):
        return self.start_server(name, ccserver_section(name) + WRITER, wname=name)

    def hub(self, writers, extra=""):
        self.shards = [w.endpoint for w in writers]
        return self.start_server(
            "hub", HUB, shards=", ".join(self.shards), extra=extra
        )

    def send_all(self, hub, version):
        sock = self.dealer(hub.endpoint)
        for host in HOSTS:
            fields = {"hostname": host, "filename": "info", "mtime": version, "data": ""}
            blob = b"%s v%d" % (host.encode(), version)
            sock.send_multipart(CCMessage.build("pub.infofile", fields, blob=blob).frames)

    def where(self, host, version):
        """The writers (by name) holding ``host``'s file at ``version``."""
        want = b"%s v%d" % (host.encode(), version)
        return [
            name
            for name in ("w1", "w2", "w3")
            if read_file(os.path.join(self.tmp, name, host, "info")) == want
        ]

    def wait_landed(self, version, expect):
        """Wait until every host's file is at ``version`` on exactly the writer ``expect`` names."""
        def landed():
            return all(self.where(h, version) == [expect(h)] for h in HOSTS)

        wait_for(landed, 15, "every host's version %d on its shard" % version)

    def owner_name(self, host, shards=None):
        shards = shards or self.shards
        return {w.endpoint: w.name for w in self.writers}[shards[owner(host, shards)]]

    def test_each_host_lands_on_its_shard_and_waits_for_it_when_down(self):
        self.writers = [self.writer("w1"), self.writer("w2")]
        hub = self.hub(self.writers)
        self.send_all(hub, 1)
        self.wait_landed(1, self.owner_name)
        by_w1 = [h for h in HOSTS if self.owner_name(h) == "w1"]
        self.assertTrue(0 < len(by_w1) < len(HOSTS))
        # w1 freezes (what reaches it is lost with it), is found down, killed and restarted
        w1 = self.writers[0]
        w1.send_signal(signal.SIGSTOP)
        self.send_all(hub, 2)
        hub.wait_log(r"shard tcp://\S+ is down: its hosts' messages wait for it")
        w1.stop(signal.SIGKILL)
        self.send_all(hub, 3)
        restart_on_its_endpoint(w1)
        hub.wait_log(r"shard tcp://\S+ is back \(\d+ messages sent again\)")
        # nothing lost, nothing split: w1's hosts only ever on w1
        self.wait_landed(3, self.owner_name)
        for host in by_w1:
            self.assertFalse(os.path.exists(os.path.join(self.tmp, "w2", host)), host)
        self.assertGreaterEqual(hub.wait_stat("proxy.resent", 1), 1)

    def test_a_shard_down_sends_its_hosts_to_their_secondary(self):
        self.writers = [self.writer("w1"), self.writer("w2")]
        hub = self.hub(self.writers, "shard-down = secondary")
        self.send_all(hub, 1)
        self.wait_landed(1, self.owner_name)
        w1 = self.writers[0]
        w1.stop(signal.SIGKILL)
        hub.wait_log(r"shard tcp://\S+ is down: its hosts go to their secondaries")
        self.send_all(hub, 2)
        self.wait_landed(2, lambda host: "w2")
        restart_on_its_endpoint(w1)
        hub.wait_log(r"shard tcp://\S+ is back")
        self.send_all(hub, 3)
        self.wait_landed(3, self.owner_name)

    def test_a_shard_added_on_reload_takes_only_its_hosts(self):
        self.writers = [self.writer("w1"), self.writer("w2")]
        hub = self.hub(self.writers)
        self.send_all(hub, 1)
        self.wait_landed(1, self.owner_name)
        before = {h: self.owner_name(h) for h in HOSTS}
        self.writers.append(self.writer("w3"))
        three = self.shards + [self.writers[2].endpoint]
        with open(hub.ini, encoding="utf8") as f:
            text = f.read()
        hub.write_ini(re.sub(r"(?m)^shards = .*$", "shards = " + ", ".join(three), text))
        hub.send_signal(signal.SIGHUP)
        hub.wait_log(r"shards now tcp://")
        self.shards = three
        self.send_all(hub, 2)
        self.wait_landed(2, self.owner_name)
        moved = [h for h in HOSTS if self.owner_name(h) != before[h]]
        self.assertTrue(moved, "no host moved to the new shard")
        self.assertTrue(all(self.owner_name(h) == "w3" for h in moved))

    def test_shards_and_remote_cc_together_are_refused(self):
        cases = (
            ("remote-cc = tcp://127.0.0.1:9\nshards = tcp://127.0.0.1:9",
             "needs remote-cc or shards (one of them)"),
            ("shards = tcp://127.0.0.1:9\nshard-down = maybe",
             "[h:p]: shard-down = maybe: expected one of wait, secondary"),
            ("shards = tcp://127.0.0.1:9, tcp://127.0.0.1:9",
             "shards must name distinct endpoints"),
        )  # fmt: skip
        for n, (options, error) in enumerate(cases):
            name = "bad%d" % n
            section = "[routes]\npub = h:p\n[h:p]\nhandler = proxy\n%s\n" % options
            text = self.start_failing(name, ccserver_section(name, role="proxy") + section)
            self.assertIn(error, text)
