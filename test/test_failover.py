"""Hub failover: a host's proxy with two hubs, one killed and restarted under real traffic.

logtail, infosender and taskexec run on the host; the end-service writes log
copies and info files and routes tasks.  The hub in use is frozen (what it
got is lost with it), killed and later restarted: the copies must be byte for
byte, every task answered exactly once, none run twice, and tasks sent after
the failover must run through the other hub.
"""

import os
import random
import re
import signal
import socket
import time
import uuid

import zmq
from daemonproc import DaemonTestCase
from harness import ccserver_section, read_file, wait_for
from test_daemon_logtail import Source

from cc.message import CCMessage
from cc.msgtypes import TASK_FINAL

HOSTNAME = socket.gethostname()

END = ccserver_section("end") + """
[routes]
pub.logtail = h:tail
pub.infofile = h:info
task = h:taskrouter
log = h:log

[h:tail]
handler = tailwriter
dstdir = {tmp}/tail

[h:info]
handler = infowriter
dstdir = {tmp}/info
host-subdirs = yes

[h:taskrouter]
handler = taskrouter
task-ack-timeout = 3
reply-timeout = 6
maint-period = 0.2

[h:log]
handler = locallogger
"""

HUB = """
[routes]
pub = h:up
task = h:up
echo = h:echo

[h:up]
handler = proxy
remote-cc = {end}

[h:echo]
handler = echo
"""

HOST = ccserver_section("host", role="local", cc_stats="2") + """
[routes]
pub = h:hubs
task = h:hubs
log = h:log

[h:hubs]
handler = proxy
remote-cc = {hub1}, {hub2}
# a busy test machine may hold a pong for a second: 2 s of silence is a dead hub
ping-period = 0.25
ping-lost-after = 8
failback-after = 1

[h:log]
handler = locallogger

[d:logtail]
logdir = {tmp}/src
logname = app.log
operation-mode = rotated
state-file = {tmp}/logtail.save
ack-timeout = 8
poll-period = 0.05
buffer-bytes = 4K
window = 4
stats-period = 0.5

[d:infosender]
infodir = {tmp}/infosrc
infomask = info.*
scan-period = 0.1
ack-timeout = 8
state-file = {tmp}/infosender.state

[d:taskrunner]
local-id = fohost
reg-period = 300
task-heartbeat = 0.5

[cc.task.sample]
"""


def restart_on_its_endpoint(server):
    """Start a server that was stopped again, on the address it had."""
    with open(server.ini, encoding="utf8") as f:
        text = f.read()
    server.write_ini(text.replace("tcp://127.0.0.1:*", server.endpoint, 1))
    server.start()


class TaskClient:
    """Sends tasks straight to the taskrouter and keeps every reply, per task."""

    def __init__(self, sock):
        self.sock = sock
        self.replies = {}

    def send(self, delay=0.2):
        uid = uuid.uuid4().hex
        self.replies[uid] = []
        fields = {
            "task_host": "fohost",
            "task_handler": "cc.task.sample",
            "task_id": uid,
            "delay": delay,
        }
        self.sock.send_multipart(CCMessage.build("task.send." + uid, fields, route=[b"Q"]).frames)
        return uid

    def pump(self):
        while self.sock.poll(0):
            msg = CCMessage(self.sock.recv_multipart())
            body = msg.get_body()
            if msg.type.startswith("task.reply."):
                self.replies[msg.type.split(".", 2)[2]].append(body["status"])

    def finals(self, uid):
        self.pump()
        return [s for s in self.replies[uid] if s in TASK_FINAL]

    def wait_answered(self, uids, timeout=30):
        wait_for(lambda: all(self.finals(u) for u in uids), timeout, "every task answered")
        time.sleep(0.3)  # a second final answer would come right behind the first
        for uid in uids:
            self.assertion(uid)

    def assertion(self, uid):
        finals = self.finals(uid)
        if len(finals) != 1:
            raise AssertionError("task %s: final answers %s" % (uid, self.replies[uid]))


class TestHubFailover(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.src = Source(os.path.join(self.tmp, "src"), random.Random(25))
        os.mkdir(self.src.srcdir)
        self.infosrc = os.path.join(self.tmp, "infosrc")
        os.mkdir(self.infosrc)
        self.infos = {}

    def hub(self, name, end):
        return self.start_server(
            name, ccserver_section(name, role="proxy", cc_stats="2") + HUB, end=end
        )

    def write_info(self, n):
        name = "info.%d" % n
        data = b"version %d of %s\n" % (n, name.encode()) * 50
        tmp = os.path.join(self.infosrc, "tmp")
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, os.path.join(self.infosrc, name))
        self.infos[name] = data

    def test_hub_killed_and_restarted_under_logtail_infosender_and_tasks(self):
        self.src.start("app.log")
        end = self.start_server("end", END)
        hub1 = self.hub("hub1", end.endpoint)
        hub2 = self.hub("hub2", end.endpoint)
        host = self.start_server("host", HOST, hub1=hub1.endpoint, hub2=hub2.endpoint)
        runner = self.start_daemon(host, "cc.daemon.taskrunner", "d:taskrunner")
        self.start_daemon(host, "cc.daemon.logtail", "d:logtail")
        self.start_daemon(host, "cc.daemon.infosender", "d:infosender")
        end.wait_stat("task.register", 1, timeout=15)
        tasks = TaskClient(self.dealer(end.endpoint))

        self.src.append(20000)
        self.write_info(1)
        before = [tasks.send(delay=0.3) for _ in range(3)]
        hub1.wait_stat("count.ok.msg.pub.logtail", 2)

        # the hub in use freezes: what reaches it now is lost with it
        hub1.send_signal(signal.SIGSTOP)
        sent = host.stats_total().get("count.ok.msg.pub.logtail", 0)
        self.src.append(10000)
        self.write_info(2)
        host.wait_stat("count.ok.msg.pub.logtail", sent + 2)
        host.wait_log(r"tcp://\S+ does not answer: failing over to tcp://\S+")
        hub1.stop(signal.SIGKILL)

        # the runner registered again through hub2, and tasks go that way at once
        end.wait_stat("task.register", 2, timeout=30)
        after_failover = [tasks.send() for _ in range(3)]
        self.src.append(10000)
        self.write_info(3)
        tasks.wait_answered(before + after_failover)
        for uid in after_failover:
            self.assertEqual(tasks.finals(uid), ["finished"], tasks.replies[uid])

        # hub1 comes back: after failback-after of answers the host goes back to it
        restart_on_its_endpoint(hub1)
        # a restart and a reconnection first: on a busy machine that takes a while
        host.wait_log(r"answered for 1 s: back to it", timeout=60)
        end.wait_stat("task.register", 3, timeout=30)
        after_failback = [tasks.send() for _ in range(3)]
        self.src.append(10000)
        self.src.rotate_by_rename()
        self.src.append(5000)
        self.write_info(4)
        tasks.wait_answered(after_failback)
        for uid in after_failback:
            self.assertEqual(tasks.finals(uid), ["finished"], tasks.replies[uid])
        hub1.wait_stat("count.ok.msg.task.register", 1)  # the runner came back with the host

        self.wait_copies()
        for name, data in self.infos.items():
            path = os.path.join(self.tmp, "info", HOSTNAME, name)
            wait_for(lambda: read_file(path) == data, 20, path)
        # no task ran twice: one launch per task id in the runner's log
        launched = re.findall(r"task (\w+): cc\.task\.sample launched", runner.output())
        self.assertEqual(sorted(launched), sorted(set(launched)))
        self.assertGreaterEqual(host.wait_stat("proxy.resent", 1), 1)
        self.assertEqual(host.stats_total().get("proxy.failover"), 1)

    def wait_copies(self, timeout=30):
        want = sorted(bytes(c) for c in self.src.files if c)
        dst = os.path.join(self.tmp, "tail")

        def copies():
            found = []
            for root, _, files in os.walk(dst):
                found.extend(read_file(os.path.join(root, f)) for f in files if f[0] != ".")
            return sorted(found) == want

        wait_for(copies, timeout, "log copies equal to the source")


class TestFailoverConfig(DaemonTestCase):
    def test_several_endpoints_ping_and_a_silent_one_is_left(self):
        end = self.start_server("end", END)
        dead = "tcp://127.0.0.1:9"
        host = self.start_server("host", HOST, hub1=dead, hub2=self.hub_up(end))
        host.wait_log(r"tcp://127\.0\.0\.1:9 does not answer: failing over to tcp://\S+")
        sock = self.dealer(host.endpoint)
        sock.send_multipart(
            CCMessage.build(
                "pub.infofile", {"filename": "info.x", "mtime": 1, "data": "eA=="}
            ).frames
        )
        path = os.path.join(self.tmp, "info", HOSTNAME, "info.x")
        wait_for(lambda: read_file(path) == b"x", what=path)
        self.assertEqual(zmq.POLLIN & sock.poll(0), 0)

    def hub_up(self, end):
        return self.start_server(
            "hub", ccserver_section("hub", role="proxy") + HUB, end=end.endpoint
        ).endpoint
