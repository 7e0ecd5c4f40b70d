"""Configs written for the original cc start unchanged (only addresses and paths rewritten).

The whole example topology of 0.8.7 runs too, started with ``cc-server -d`` as its zstart.sh
did; ``CC_TEST_LONG`` watches it for the 60 s of the issue instead of 10 s.
"""

import glob
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

from harness import WAIT, CCTestCase, child_env, pid_alive, read_file, wait_for

from cc.jobs.env import connectable
from cc.message import CCMessage

HOSTNAME = socket.gethostname()

# the original's conf/ccproxy.ini, as shipped: module paths, active echo, commented extras
CCPROXY = """\
[ccserver]
logfile = ~/log/%(job_name)s.log
pidfile = ~/pid/%(job_name)s.pid
infofile = ~/log/%(job_name)s.info

cc-role = remote
cc-stats = 2

# listening socket for this CC instance
cc-socket = tcp://0.0.0.0:10001

[routes]
pub.infofile = h:proxy-info
pub.logtail = h:proxy-log
log = h:proxy-log
task = h:proxy-task
db = h:proxy-db
echo = h:echo

[h:proxy-info]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10002

[h:proxy-log]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10003

[h:proxy-task]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10004

[h:proxy-db]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10005

[h:echo]
handler = cc.handler.echo
ping-remotes = tcp://127.0.0.1:10002, tcp://127.0.0.1:10003, tcp://127.0.0.1:10004

#[h:delay]
#handler = cc.handler.delay
#forward-to = h:proxy-info
#delay = 5

#[h:filter]
#handler = cc.handler.filter
#forward-to = h:proxy-info
#include = pub.info*
"""

# the original's test configs: legacy "plugin =" keys and sections without the h: prefix
LOG_RECV = """\
[ccserver]
logfile = TMP/%(job_name)s.log
pidfile = TMP/%(job_name)s.pid
cc-role = remote
cc-socket = PORT1

[routes]
log = locallog
echo = echo

[locallog]
plugin = locallogger

[echo]
plugin = echo
"""

LOG_SEND = """\
[ccserver]
logfile = TMP/%(job_name)s.log
pidfile = TMP/%(job_name)s.pid
cc-role = local
cc-socket = PORT2

[routes]
log = h:proxy
echo = h:proxy

[h:proxy]
handler = proxy
remote-cc = PORT1
ping = yes
"""


def log_frames(text):
    return CCMessage.build(
        "log.info",
        {
            "log_level": "INFO",
            "service_type": "testmsg",
            "job_name": "job",
            "log_msg": text,
            "log_time": time.time(),
            "log_pid": 1,
            "log_line": 1,
            "log_function": "main",
        },
    ).frames


class TestOriginalConfigs(CCTestCase):
    def start_original(self, name, text, **ports):
        text = (
            text.replace("~/log/", "{tmp}/").replace("~/pid/", "{tmp}/").replace("TMP/", "{tmp}/")
        )
        for placeholder, url in ports.items():
            text = text.replace(placeholder, url)
        text = text.replace("tcp://0.0.0.0:10001", "tcp://127.0.0.1:*")
        server = self.write_server(name, text)
        # job_name comes from the file name, as in the original
        server.logfile = "%s/%s.log" % (self.tmp, name)
        server.infofile = "%s/%s.info" % (self.tmp, name)
        # stats every 0.2 s instead of 30 s, through skytools' --set override
        return server.start("--set", "stats-period=0.2")

    def test_original_logging_scenario(self):
        recv = self.start_original("log-recv", LOG_RECV, PORT1="tcp://127.0.0.1:*")
        send = self.start_original(
            "log-send", LOG_SEND, PORT1=recv.endpoint, PORT2="tcp://127.0.0.1:*"
        )
        sock = self.dealer(send.endpoint)
        sock.send_multipart(log_frames("Foo"))
        recv.wait_log(r"INFO Foo")
        sock.send_multipart(CCMessage.build("pub.infofile", {"filename": "info.1"}).frames)
        send.wait_log(r"no route")
        self.assertNotIn("no pong", send.output())

    def test_original_proxy_hub(self):
        recv = self.start_original("log-recv", LOG_RECV, PORT1="tcp://127.0.0.1:*")
        hub_text = CCPROXY.replace("tcp://127.0.0.1:10003", recv.endpoint)
        hub = self.start_original("ccproxy", hub_text)
        self.assertRegex(
            hub.output(), r"listening on tcp://127\.0\.0\.1:\d+ \(role remote, 6 routes\)"
        )
        sock = self.dealer(hub.endpoint)
        sock.send_multipart(log_frames("via-hub"))
        recv.wait_log(r"INFO via-hub")
        # cc-stats = 2: per-type counters
        hub.wait_stat("count.ok.msg.log.info", 1)
        hub.wait_log(r"no pong from tcp://127\.0\.0\.1:10002 for")


# -- the original's example topology (conf/*.ini of 0.8.7), started as its zstart.sh did -------

CCLOCAL = """\
[ccserver]
logfile = ~/log/%(job_name)s.log
pidfile = ~/pid/%(job_name)s.pid
infofile = ~/log/%(job_name)s.info

# listening socket for this CC instance
cc-socket = tcp://127.0.0.1:10000

# either 'local' or 'remote'
cc-role = local

# stats level; default: 1
cc-stats = 2

cms-keystore = ./keys
#cms-verify-ca = ca
#cms-decrypt = server
#cms-encrypt = confdb

# msgtype -> handler mapping
[routes]
# local routes
log = h:locallog
job = h:jobmgr
echo = h:echo

# remote routes
pub = h:proxycc
task = h:proxycc
db = h:proxycc

# echo service
[h:echo]
handler = cc.handler.echo
#ping-remotes = tcp://127.0.0.1:10001

# send message to local logfile
[h:locallog]
handler = cc.handler.locallogger

# send message to remote cc
[h:proxycc]
handler = cc.handler.proxy
remote-cc = tcp://127.0.0.1:10001
ping = yes

# drop messages
[h:disposer]
handler = cc.handler.disposer

# manage subdaemons
[h:jobmgr]
handler = cc.handler.jobmgr
daemons = d:infosender, d:infoscript, d:taskrunner, d:logtail, d:pg_logforward

# subdaemon that collects and sends infofiles, launched by jobmgr
[d:infosender]
module = cc.daemon.infosender
infodir = /tmp/infodir
infomask = info.*
#cms-sign = server
#cms-encrypt = confdb
compression = gzip
compression-level = 1

[d:infoscript]
module = cc.daemon.infoscript
info-name = info.server-stats.pl
info-script = ps axuw
info-period = 10
compression = gzip

[d:taskrunner]
module = cc.daemon.taskrunner
local-id = hostname
#reg-period = 300
#maint-period = 60

[d:logtail]
module = cc.daemon.logtail
logdir = /tmp/infodir
logmask = postgresql-*.log
#operation-mode = rotated
use-blob = yes
#compression = gzip
compression-level = 1
lag-max-bytes = 256 MB

[d:pg_logforward]
module = cc.daemon.pg_logforward
listen-host = 0.0.0.0
listen-port = 23456
log-format = netstr
plugins = p:logwatch

[p:logwatch]
module = cc.daemon.plugins.pg_logforward.example_logwatch

[t:sample]
#sudo = marko
"""

CCSERVER_INFO = """\
[ccserver]
logfile = ~/log/%(job_name)s.log
pidfile = ~/pid/%(job_name)s.pid
infofile = ~/log/%(job_name)s.info

cc-socket = tcp://0.0.0.0:10002

# either 'local' or 'remote'
cc-role = remote

# stats level; default: 1
cc-stats = 2

cms-keystore = ./keys
#cms-sign = server
#cms-decrypt = confdb
#cms-verify-ca = ca

[routes]
echo = h:echo
pub.infofile = h:infowriter

# echo service (passive)
[h:echo]
handler = cc.handler.echo

[h:infowriter]
handler = cc.handler.infowriter
dstdir = /tmp/infofiles
host-subdirs = yes
bakext = --prev
#write-compressed = keep
"""

CCSERVER_LOG = """\
[ccserver]
logfile = ~/log/%(job_name)s.log
pidfile = ~/pid/%(job_name)s.pid
infofile = ~/log/%(job_name)s.info

cc-socket = tcp://0.0.0.0:10003

# either 'local' or 'remote'
cc-role = remote

# stats level; default: 1
cc-stats = 2

[routes]
pub.infofile = infofile
pub.logtail = h:tailwriter
req.task = taskrouter
log = h:locallog
echo = h:echo

[h:echo]
handler = cc.handler.echo

[infofile]
plugin = infowriter
dstdir = /tmp/infofiles
host-subdirs = no

[taskrouter]
plugin = taskrouter
route-lifetime = 3600

[h:locallog]
plugin = locallogger

[h:tailwriter]
handler = cc.handler.tailwriter
dstdir = /tmp/infofiles
host-subdirs = yes
#write-compressed = yes
compression = gzip
compression-level = 1
"""

CCSERVER_TASKS = """\
[ccserver]
logfile = ~/log/%(job_name)s.log
pidfile = ~/pid/%(job_name)s.pid
infofile = ~/log/%(job_name)s.info

cc-socket = tcp://0.0.0.0:10004

# either 'local' or 'remote'
cc-role = remote

# stats level; default: 1
cc-stats = 2

[routes]
task = h:taskrouter
echo = h:echo

[h:taskrouter]
handler = cc.handler.taskrouter
route-lifetime = 3600
maint-period = 60

[h:echo]
handler = cc.handler.echo
"""

CCSERVER_CONFDB = """\
[ccserver]
logfile = ~/log/%(job_name)s.log
pidfile = ~/pid/%(job_name)s.pid
infofile = ~/log/%(job_name)s.info

cc-socket = tcp://0.0.0.0:10005

# either 'local' or 'remote'
cc-role = remote

# stats level; default: 1
cc-stats = 2

cms-keystore = ./keys
#cms-verify-ca = ca
#cms-sign = confdb
#cms-decrypt = confdb

[routes]
db.confdb = h:confdb
db.testdb = h:testdb

[h:confdb]
handler = cc.handler.database
db = dbname=confdb host=127.0.0.1 port=8300
#allowed-functions = *

[h:testdb]
handler = cc.handler.database
db = dbname=test host=127.0.0.1 port=6008
allowed-functions = *
"""

#: in the order zstart.sh's glob would not guarantee, but the links need: peers first
TOPOLOGY = (
    ("ccserver-info", CCSERVER_INFO, "10002"),
    ("ccserver-log", CCSERVER_LOG, "10003"),
    ("ccserver-tasks", CCSERVER_TASKS, "10004"),
    ("ccserver-confdb", CCSERVER_CONFDB, "10005"),
    ("ccproxy", CCPROXY, "10001"),
    ("cclocal", CCLOCAL, "10000"),
)
#: seconds no daemon may restart (the issue's 60 with CC_TEST_LONG)
STABLE_FOR = 60.0 if os.environ.get("CC_TEST_LONG") else 10.0
FINAL = ("finished", "failed", "stopped")


class TestOriginalTopology(CCTestCase):
    """The six example configs of 0.8.7, unchanged but for ports and paths, as zstart.sh ran them.

    ``~`` is the test's home (``HOME``), ``/tmp/infodir`` and ``/tmp/infofiles``
    directories of the test, each port a free one (pg_logforward's too).
    Every server is started with ``cc-server -d -v`` and stopped with SIGINT.
    """

    def setUp(self):
        super().setUp()
        self.home = os.path.join(self.tmp, "home")
        for path in ("home/log", "home/pid", "infodir", "infofiles"):  # zstart.sh's mkdirs
            os.makedirs(os.path.join(self.tmp, path))
        self.env = dict(child_env(), HOME=self.home)
        self.ports = {}
        self.pids = {}

    def rewrite(self, text):
        text = text.replace("/tmp/infodir", self.tmp + "/infodir")
        text = text.replace("/tmp/infofiles", self.tmp + "/infofiles")
        text = text.replace("listen-port = 23456", "listen-port = 0")
        for port, endpoint in self.ports.items():
            text = text.replace("tcp://127.0.0.1:%s" % port, endpoint)
        return re.sub(r"(?m)^(cc-socket = tcp://[\d.]+):\d+$", r"\1:*", text)

    def start_daemonized(self, name, text):
        """``cc-server -d -v name.ini``: the launcher exits 0, the daemon listens."""
        server = self.write_server(name, self.rewrite(text))
        server.logfile = os.path.join(self.home, "log", name + ".log")
        server.infofile = os.path.join(self.home, "log", name + ".info")
        server.pidfile = os.path.join(self.home, "pid", name + ".pid")
        launcher = subprocess.run(
            [sys.executable, "-m", "cc.server", "-d", "-v", server.ini],
            env=self.env, cwd=self.home, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=WAIT,
        )  # fmt: skip
        self.assertEqual(launcher.returncode, 0, launcher.stdout + launcher.stderr)
        self.pids[name] = int(wait_for(lambda: read_file(server.pidfile), what=server.pidfile))
        self.addCleanup(_kill, self.pids[name])
        server.wait_listening()
        return server

    def test_original_topology_runs_unchanged(self):
        servers = {}
        for name, text, port in TOPOLOGY:
            servers[name] = self.start_daemonized(name, text)
            self.ports[port] = connectable(servers[name].endpoint)
        local = servers["cclocal"]
        started = time.monotonic()
        # a PostgreSQL log in the infodir, there before logtail starts
        pglog = os.path.join(self.tmp, "infodir", "postgresql-2013-02-01_000000.log")
        open(pglog, "wb").close()
        jobs = ("d:infosender", "d:infoscript", "d:taskrunner", "d:logtail", "d:pg_logforward")
        for job in jobs:  # -v logs the state changes (the infofile comes every 30 s)
            local.wait_log(r"Job %s: STARTING -> RUNNING" % job, 20)
            self.addCleanup(_kill, int(local.wait_log(r"Job %s started: pid (\d+)" % job).group(1)))
        # logtail reads a log it finds from its end: it must have found it before lines come
        local.wait_log(r"started \S*postgresql-2013-02-01_000000.log at file position 0", 20)

        # logtail -> cclocal -> ccproxy -> ccserver-log's tailwriter, byte for byte
        content = b"".join(b"2013-02-01 00:00:%02d LOG:  line %d \xc3\xa4\n" % (i % 60, i)
                           for i in range(3000))  # fmt: skip
        with open(pglog, "ab") as f:
            for i in range(0, len(content), 7000):
                f.write(content[i : i + 7000])
                f.flush()
        copy = os.path.join(self.tmp, "infofiles", HOSTNAME, os.path.basename(pglog))
        wait_for(lambda: read_file(copy) == content, 20, "the log copied to " + copy)

        # infosender -> ccserver-info's infowriter (gzip on the way)
        with open(os.path.join(self.tmp, "infodir", "info.test"), "wb") as f:
            f.write(b"status ok\n")
        info = os.path.join(self.tmp, "infofiles", HOSTNAME, "info.test")
        wait_for(lambda: read_file(info) == b"status ok\n", 20, info)

        # testmsg.py task: task.send.<uuid1>, task_id 55, sent twice; one final answer.
        # cclocal.ini allows no task module ([t:sample] is stale): that is the answer
        client = self.dealer(local.endpoint)
        uid = str(uuid.uuid1())
        fields = {"task_host": "hostname", "task_handler": "cc.task.sample", "task_id": 55,
                  "cmd": "run"}  # fmt: skip
        frames = CCMessage.build("task.send." + uid, fields).frames
        client.send_multipart(frames)
        client.send_multipart(frames)
        replies = []
        while not replies or replies[-1]["status"] not in FINAL:
            msg = CCMessage(self.recv(client, 20))
            self.assertEqual(msg.type, "task.reply." + uid, msg.get_body())
            replies.append(msg.get_body())
        self.assert_silent(client, 1.0)
        self.assertEqual([r["status"] for r in replies], ["forwarded", "forwarded", "failed"])
        self.assertEqual({r["task_id"] for r in replies}, {55})
        self.assertIn("Task module 'cc.task.sample' not configured", replies[-1]["feedback"]["msg"])

        # testmsg.py db: db.confdb through two hops, refused (no allowed-functions)
        reply = self.query(client, "db.confdb", {"function": "public.test_json"})
        self.assertEqual(reply.get_body()["code"], "not-allowed")

        # no daemon restarted
        time.sleep(max(0.0, STABLE_FOR - (time.monotonic() - started)))
        for job in jobs:
            self.assertEqual(local.output().count("Job %s started" % job), 1, job + " restarted")
        self.assertNotRegex(local.output(), r"Job d:\S+ exited")

        # zstop.sh: SIGINT to each server; no process, no pidfile left
        job_pids = [int(p) for p in re.findall(r"Job d:\S+ started: pid (\d+)", local.output())]
        for pid in self.pids.values():
            os.kill(pid, signal.SIGINT)
        for pid in list(self.pids.values()) + job_pids:
            wait_for(lambda: not pid_alive(pid), 20, "pid %d to exit" % pid)
        pidfiles = glob.glob(os.path.join(self.home, "pid", "*.pid"))
        self.assertEqual(pidfiles, [])


def _kill(pid):
    """Cleanup after a failed test: nothing it started keeps running."""
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
