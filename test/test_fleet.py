"""Fleet operations: host names, the list of hosts, tasks fanned out to many hosts."""

import os
import socket

from harness import CCTestCase, ccserver_section, wait_for

#: one cc playing a named host: its daemons, a statswriter and a taskrouter in one process
NAMED_HOST = ccserver_section("host", role=None, hostname="{hostname}") + """
[routes]
pub = h:stats
task = h:taskrouter
job = h:jobmgr

[h:stats]
handler = statswriter
dstdir = {tmp}/stats

[h:taskrouter]
handler = taskrouter

[h:jobmgr]
handler = jobmgr
daemons = d:taskrunner
keepalive-period = 0.5

[d:taskrunner]
module = cc.daemon.taskrunner
reg-period = 0.5
stats-period = 0.2

[cc.task.sample]
"""


class TestHostName(CCTestCase):
    def test_hostname_names_the_server_and_every_daemon(self):
        self.assertNotEqual(socket.gethostname(), "fleet-a")
        host = self.start_server("host", NAMED_HOST, hostname="fleet-a")
        stats_dir = os.path.join(self.tmp, "stats")
        wait_for(
            lambda: os.path.exists(os.path.join(stats_dir, "fleet-a", "host.state"))
            and os.path.exists(os.path.join(stats_dir, "fleet-a", "host.d:taskrunner.stats")),
            what="server and daemon reports under fleet-a",
        )
        self.assertEqual(os.listdir(stats_dir), ["fleet-a"])
        host.wait_log(r"host fleet-a registered")  # the runner's local-id defaults to it

    def test_bad_hostname_is_a_config_error(self):
        server = self.write_server("host", NAMED_HOST, hostname="a b/c")
        result = self.run_command(server.command())
        self.servers.remove(server)
        self.assertEqual(result.returncode, 1)
        self.assertIn("hostname = 'a b/c'", result.stderr)
