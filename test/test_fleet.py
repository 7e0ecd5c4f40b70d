"""Fleet operations: host names, the list of hosts, tasks fanned out to many hosts."""

import os
import signal
import re
import socket
import subprocess
import sys
import time

import zmq
from harness import WAIT, CCTestCase, ccserver_section, child_env, wait_for

from cc.message import CCMessage

#: jobmgr running a task runner whose local-id is left to default
TASK_RUNNER = """
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

#: one cc playing a named host: its daemons, a statswriter and a taskrouter in one process
NAMED_HOST = ccserver_section("host", role=None, hostname="{hostname}") + """
[routes]
pub = h:stats
task = h:taskrouter
job = h:jobmgr

[h:stats]
handler = statswriter
dstdir = {tmp}/stats
write-interval = 0

[h:taskrouter]
handler = taskrouter
""" + TASK_RUNNER


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


ROUTER = ccserver_section("router") + """
[routes]
task = h:taskrouter

[h:taskrouter]
handler = taskrouter
max-fanout = {max_fanout}
"""


class SimulatedHosts:
    """Real ZeroMQ peers that register with a taskrouter as task runners do, one per host."""

    def __init__(self, test: CCTestCase, endpoint: str, names):
        self.peers = {name: test.dealer(endpoint) for name in names}
        self.answered = {}  # host -> the task ids it got
        for name, sock in self.peers.items():
            body = {"host": name, "version": "9.9-sim", "modules": ["cc.task.sample"], "period": 30}
            sock.send_multipart(CCMessage.build("task.register", body).frames)

    def serve(self, until, silent=(), failing=(), repeat_final=(), timeout=WAIT):
        """Answer tasks until ``until()``: ``silent`` hosts never answer, ``failing`` fail.

        A host in ``repeat_final`` sends its final reply twice (a runner's
        answer to a repeated task id); the client must see it once.
        """
        poller = zmq.Poller()
        by_socket = {}
        for name, sock in self.peers.items():
            poller.register(sock, zmq.POLLIN)
            by_socket[sock] = name
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("simulated hosts: gave up after %.0f s" % timeout)
            for sock, _ in poller.poll(100):
                host = by_socket[sock]
                task = CCMessage(sock.recv_multipart())
                body = task.get_body()
                self.answered.setdefault(host, []).append(body["task_id"])
                if host in silent:
                    continue
                final = "failed" if host in failing else "finished"
                replies = ["starting", final] + ([final] if host in repeat_final else [])
                for status in replies:
                    fields = {"task_id": body["task_id"], "status": status}
                    fields["feedback"] = {"rc": 3 if final == "failed" else 0}
                    reply = CCMessage.build("task.reply." + body["task_id"], fields)
                    sock.send_multipart(reply.frames)


class TestFanOut(CCTestCase):
    def setUp(self):
        super().setUp()
        self.client_ini = os.path.join(self.tmp, "taskclient.ini")

    def start_router(self, max_fanout="1000"):
        router = self.start_server("router", ROUTER, max_fanout=max_fanout)
        with open(self.client_ini, "w", encoding="utf8") as f:
            f.write("[taskclient]\ncc = %s\ntimeout = 5\nretries = 1\n" % router.endpoint)
        return router

    def cc_task(self, *args):
        return subprocess.Popen(
            [sys.executable, "-m", "cc.taskclient", self.client_ini, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
            stdin=subprocess.DEVNULL,
        )

    def test_fifty_hosts_three_silent_two_failing(self):
        router = self.start_router()
        names = ["sim-%02d" % n for n in range(50)]
        fleet = SimulatedHosts(self, router.endpoint, names)
        router.wait_stat("task.register", 50)

        listing = self.run_command(
            [sys.executable, "-m", "cc.taskclient", self.client_ini, "--hosts"]
        )
        self.assertEqual(listing.returncode, 0, listing.stderr)
        rows = listing.stdout.splitlines()
        self.assertEqual(rows[0].split(), ["HOST", "AGE", "VERSION", "PERIOD", "MODULES"])
        self.assertEqual([row.split()[0] for row in rows[1:]], names)
        self.assertEqual(rows[1].split()[2:], ["9.9-sim", "30", "cc.task.sample"])

        silent, failing = {"sim-03", "sim-17", "sim-42"}, {"sim-08", "sim-33"}
        proc = self.cc_task(
            "--send", "task_host=sim-*", "task_handler=cc.task.sample", "host_timeout=2"
        )
        try:
            fleet.serve(
                lambda: proc.poll() is not None,
                silent=silent,
                failing=failing,
                repeat_final={"sim-01", "sim-08"},
            )
            out, err = proc.communicate(timeout=WAIT)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 1, out + err)
        lines = out.splitlines()
        self.assertEqual(lines[0], "forwarded to 50 hosts")
        # each host got the task once, as the client sent it
        ids = [fleet.answered[name] for name in names]
        self.assertTrue(all(len(got) == 1 for got in ids), ids)
        self.assertEqual(len({got[0] for got in ids}), 1)
        # every answering host's final status arrives once, then the summary
        host_lines = lines[1:-2]
        self.assertEqual(len(host_lines), 47, out)
        for name in set(names) - silent:
            status = "failed (3)" if name in failing else "finished (0)"
            self.assertEqual(host_lines.count("%s: %s" % (name, status)), 1, out)
        self.assertEqual(lines[-2], "summary: 50 hosts, 2 failed, 45 finished, 3 timeout")
        named = re.findall(r"(sim-\d+) \((\w+)\)", lines[-1])
        self.assertTrue(lines[-1].startswith("not ok: "), lines[-1])
        expected = {"sim-03": "timeout", "sim-17": "timeout", "sim-42": "timeout"}
        expected.update({"sim-08": "failed", "sim-33": "failed"})
        self.assertEqual(dict(named), expected)
        router.wait_stat("task.fanout_late", 2)  # the repeated finals, not relayed

    def test_list_of_names_gets_summary_and_exit_zero(self):
        router = self.start_router()
        fleet = SimulatedHosts(self, router.endpoint, ["db1", "db2", "web1"])
        router.wait_stat("task.register", 3)
        proc = self.cc_task("--send", "task_host=db1,web1", "task_handler=cc.task.sample")
        try:
            fleet.serve(lambda: proc.poll() is not None)
            out, err = proc.communicate(timeout=WAIT)
        finally:
            proc.kill()
        self.assertEqual(proc.returncode, 0, out + err)
        lines = out.splitlines()
        self.assertEqual(lines[0], "forwarded to 2 hosts")
        self.assertEqual(sorted(lines[1:3]), ["db1: finished (0)", "web1: finished (0)"])
        self.assertEqual(lines[3:], ["summary: 2 hosts, 2 finished"])
        self.assertNotIn("db2", fleet.answered)

    def test_bad_targets_get_clear_errors(self):
        router = self.start_router(max_fanout="3")
        SimulatedHosts(self, router.endpoint, ["db1", "db2", "db3", "db4"])
        router.wait_stat("task.register", 4)
        client = self.dealer(router.endpoint)
        cases = [
            ("db-[", "bad-target", "'[' without ']'"),
            ("db[]", "bad-target", "empty [...]"),
            ("db*]", "bad-target", "']' without '['"),
            ("db 1*", "bad-target", "use letters"),
            (["db1", 5], "bad-target", "non-empty list of names"),
            ([], "bad-target", "non-empty list of names"),
            ("web*", "no-route", "no registered host matches 'web*'"),
            (["web1", "web2"], "no-route", "no registered host matches"),
            ("db*", "too-many-hosts", "matches 4 hosts, more than max-fanout 3"),
        ]
        for n, (target, code, text) in enumerate(cases):
            fields = {"task_host": target, "task_handler": "cc.task.sample", "task_id": "b%d" % n}
            reply = self.query(client, "task.send.b%d" % n, fields, qid=b"Q%d" % n)
            self.assertEqual(reply.type, "error", target)
            self.assertEqual(reply.get_body()["code"], code, target)
            self.assertIn(text, reply.get_body()["msg"], target)
        fields = {"task_host": "db[12]", "task_handler": "x.y", "max_fanout": 0}
        reply = self.query(client, "task.send.m0", fields, qid=b"M0")
        self.assertEqual(reply.get_body()["code"], "bad-task")
        self.assertIn("max_fanout must be a positive integer, not 0", reply.get_body()["msg"])
        # a fan-out with the id of an open single-host task
        single = {"task_host": "db1", "task_handler": "x.y", "task_id": "c1"}
        ack = self.query(client, "task.send.c1", single)
        self.assertEqual(ack.get_body()["status"], "forwarded")
        fields = {"task_host": "db[12]", "task_handler": "x.y", "task_id": "c1"}
        reply = self.query(client, "task.send.c1", fields, qid=b"C1")
        self.assertEqual(reply.get_body()["code"], "duplicate")
        self.assertIn("task id c1 is in use", reply.get_body()["msg"])
        router.wait_stat("task.fanout_refused", len(cases) + 2)
        # and a single-host task with the id of a running fan-out
        fields = {"task_host": "db[12]", "task_handler": "x.y", "task_id": "d1"}
        reply = self.query(client, "task.send.d1", fields, qid=b"D1")
        self.assertNotEqual(reply.type, "error", reply.get_body())
        single = {"task_host": "db2", "task_handler": "x.y", "task_id": "d1"}
        reply = self.query(client, "task.send.d1", single, qid=b"D10")
        self.assertEqual(reply.get_body()["code"], "duplicate")
        self.assertIn("task id d1 is in use", reply.get_body()["msg"])

    def test_stopping_router_sends_open_fan_outs_their_summary(self):
        router = self.start_router()
        SimulatedHosts(self, router.endpoint, ["db1", "db2"])  # never answer
        router.wait_stat("task.register", 2)
        client = self.dealer(router.endpoint)
        fields = {"task_host": "db*", "task_handler": "cc.task.sample", "task_id": "s1"}
        self.assertNotEqual(self.query(client, "task.send.s1", fields).type, "error")
        self.assertEqual(router.stop(signal.SIGTERM), 0)
        body = CCMessage(self.recv(client)).get_body()
        self.assertEqual(body["status"], "summary")
        self.assertEqual(body["counts"], {"timeout": 2})

    def test_max_fanout_zero_is_a_config_error(self):
        server = self.write_server("router", ROUTER, max_fanout="0")
        result = self.run_command(server.command())
        self.servers.remove(server)
        self.assertEqual(result.returncode, 1)
        self.assertIn(
            "max-fanout = 0: must be a positive number of hosts", result.stderr + server.output()
        )


REAL_HOST = ccserver_section("{host}", role="local", hostname="{host}") + """
[routes]
task = h:proxy
job = h:jobmgr

[h:proxy]
handler = proxy
remote-cc = {router}
""" + TASK_RUNNER


class TestFanOutToTaskExec(CCTestCase):
    def test_pattern_reaches_real_runners_named_by_hostname(self):
        router = self.start_server("router", ROUTER, max_fanout="10")
        for name in ("real-1", "real-2"):
            self.start_server(name, REAL_HOST, host=name, router=router.endpoint)
        client_ini = os.path.join(self.tmp, "taskclient.ini")
        with open(client_ini, "w", encoding="utf8") as f:
            f.write("[taskclient]\ncc = %s\ntimeout = 5\n" % router.endpoint)
        run = [sys.executable, "-m", "cc.taskclient", client_ini]

        def both_registered():  # each runner registers every 0.5 s: count hosts, not registrations
            listing = self.run_command(run + ["--hosts"])
            rows = sorted(row.split() for row in listing.stdout.splitlines()[1:])
            return rows if [row[0] for row in rows] == ["real-1", "real-2"] else None

        rows = wait_for(both_registered, timeout=15, what="both runners registered")
        self.assertEqual(rows[0][4], "cc.task.sample")
        result = self.run_command(
            run + ["--send", "task_host=real-?", "task_handler=cc.task.sample", "cmd=test"],
            timeout=30,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        lines = result.stdout.splitlines()
        self.assertEqual(lines[0], "forwarded to 2 hosts")
        self.assertEqual(sorted(lines[1:3]), ["real-1: finished (0)", "real-2: finished (0)"])
        self.assertEqual(lines[3:], ["summary: 2 hosts, 2 finished"])
