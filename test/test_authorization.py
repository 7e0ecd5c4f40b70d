"""Who may do what: a host key against a verifying taskrouter, writers and task runners.

Every certificate and signature is made by ``openssl`` (see :mod:`pki`); the
servers, runners (under jobmgr) and sockets are real.  The attacker holds
host2's valid key; host1 is the victim; ``ops-alice`` is an operator.
"""

import json
import os
import shutil
import signal
import time
import uuid

import pgcluster
from harness import CCTestCase, ccserver_section, read_file, wait_for
from pki import PKI
from test_daemon_taskexec import HOST, ROUTER
from test_gate import DB_SERVER as GATE_DB_SERVER

from cc.message import CCMessage

pki: PKI = None  # type: ignore[assignment]


def setUpModule():
    global pki
    pki = PKI()
    for name in ("host1", "ops-alice", "router", "testhost"):
        pki.make_leaf(name, "ca")
    pki.make_leaf("host1-twin", "ca", cn="host1")  # another certificate of the same name


def tearDownModule():
    shutil.rmtree(pki.dir, ignore_errors=True)


def signed(route, msgtype, signer, **fields):
    """Frames of a message signed by ``signer`` with ``openssl cms -sign``."""
    body = {"req": msgtype, "time": time.time(), "hostname": fields.pop("hostname", signer)}
    body.update(fields)
    raw = json.dumps(body).encode()
    return list(route) + [b"", msgtype.encode(), raw, pki.sign(signer, raw)]


def audit_lines(path):
    text = read_file(path) or b""
    return [json.loads(line) for line in text.decode().splitlines()]


VERIFYING_ROUTER = """
[routes]
task = h:taskrouter
pub.infofile = h:info
pub.logtail = h:tail
log = h:log

[h:taskrouter]
handler = taskrouter
task-ack-timeout = 30
maint-period = 0.2
audit-log = {tmp}/audit.log

[h:info]
handler = infowriter
dstdir = {tmp}/info
host-subdirs = yes

[h:log]
handler = logwriter
dstdir = {tmp}/logs

[h:tail]
handler = tailwriter
dstdir = {tmp}/tails

[policy]
task.send = CN=ops-*
task.stop = CN=ops-*
task.hosts = CN=ops-*
"""


class TestHostKeyAgainstRouter(CCTestCase):
    """host2's key cannot take host1's route, forge its replies, send tasks or write as it."""

    def setUp(self):
        super().setUp()
        section = ccserver_section("router", role="end-service", cms_keystore=pki.dir,
                                   cms_verify_ca="ca", cms_sign="router", policy="policy")
        self.router = self.start_server("router", section + VERIFYING_ROUTER)
        self.audit = os.path.join(self.tmp, "audit.log")

    def register(self, signer, host, runner_id):
        sock = self.dealer(self.router.endpoint)
        sock.send_multipart(signed([], "task.register", signer, host=host, runner_id=runner_id,
                                   period=30))
        return sock

    def test_route_takeover_and_forged_reply_fail(self):
        host1 = self.register("host1", "host1", "r1")
        self.router.wait_stat("task.register")
        attacker = self.register("host2", "host1", "evil")
        self.router.wait_stat("task.forbidden")
        self.router.wait_log(r"task.register refused: Common Name: host2.* may act only as host "
                             r"host2, not host1")  # fmt: skip
        operator = self.dealer(self.router.endpoint)
        uid = uuid.uuid4().hex
        frames = signed([b"Q1"], "task.send." + uid, "ops-alice", task_host="host1",
                        task_handler="cc.task.sample", task_id=uid, secret="s3cret")
        operator.send_multipart(frames)
        self.assertEqual(CCMessage(self.recv(operator)).get_body()["status"], "forwarded")
        got = self.recv(host1)
        self.assertEqual(got[1:], frames[2:], "the task reaches host1 as the operator signed it")
        self.assert_silent(attacker)
        # host2 answers for host1's task: dropped; host1's real answer arrives
        attacker.send_multipart(signed([], "task.reply." + uid, "host2", task_id=uid,
                                       status="finished"))
        self.router.wait_stat("task.forbidden", 2)
        host1.send_multipart(signed([], "task.reply." + uid, "host1", task_id=uid,
                                    status="failed"))
        final = CCMessage(self.recv(operator))
        self.assertEqual(final.get_body()["status"], "failed")
        self.assertEqual(pki.verify(final.signature, final.body_bytes), final.body_bytes)
        lines = audit_lines(self.audit)
        refused = [line for line in lines if line["outcome"] == "forbidden"]
        self.assertEqual([line["event"] for line in refused], ["task.register", "task.reply." + uid])
        self.assertTrue(all("Common Name: host2" in line["signer"]["subject"] for line in refused))
        sent = [line for line in lines if line["event"] == "task.send"]
        self.assertEqual(sent[0]["hosts"], ["host1"])
        self.assertIn("ops-alice", sent[0]["signer"]["subject"])
        self.assertEqual(sent[0]["task"], "cc.task.sample")
        ended = [line for line in lines if line["event"] == "task.end"]
        self.assertEqual((ended[0]["uid"], ended[0]["outcome"]), (uid, "failed"))

    def test_host_held_by_a_live_runner_of_another_certificate_is_not_taken(self):
        host1 = self.register("host1", "host1", "r1")
        self.router.wait_stat("task.register")
        twin = self.register("host1-twin", "host1", "r2")
        self.router.wait_log(r"task.register refused: host host1 is held by a live task runner "
                             r"of another certificate")  # fmt: skip
        operator = self.dealer(self.router.endpoint)
        uid = uuid.uuid4().hex
        operator.send_multipart(signed([b"Q1"], "task.send." + uid, "ops-alice", task_host="host1",
                                       task_handler="cc.task.sample", task_id=uid))
        self.recv(host1)
        self.assert_silent(twin)
        # the holder stops cleanly: the other certificate may take the name now
        host1.send_multipart(signed([], "task.unregister", "host1", host="host1", runner_id="r1"))
        self.router.wait_stat("task.unregister")
        twin.send_multipart(signed([], "task.register", "host1-twin", hostname="host1",
                                   host="host1", runner_id="r2"))  # fmt: skip
        self.router.wait_stat("task.register", 2)

    def test_host_key_cannot_send_tasks_single_or_fan_out(self):
        host1 = self.register("host1", "host1", "r1")
        self.router.wait_stat("task.register")
        attacker = self.dealer(self.router.endpoint)
        for n, target in enumerate(("host1", ["host1"], "host*")):
            uid = uuid.uuid4().hex
            attacker.send_multipart(signed([b"Q%d" % n], "task.send." + uid, "host2",
                                           task_host=target, task_handler="cc.task.sample"))
            reply = CCMessage(self.recv(attacker))
            self.assertEqual((reply.type, reply.get_body()["code"]), ("error", "forbidden"))
            self.assertIn("[policy] task.send", reply.get_body()["msg"])
        self.router.wait_stat("count.invalid.forbidden", 3)
        self.assert_silent(host1)

    def test_operator_fan_out_reaches_each_host_with_the_operators_signature(self):
        runners = {name: self.register(name, name, name + "-r") for name in ("host1", "host2")}
        self.router.wait_stat("task.register", 2)
        operator = self.dealer(self.router.endpoint)
        uid = uuid.uuid4().hex
        frames = signed([b"Q1"], "task.send." + uid, "ops-alice", task_host="host*",
                        task_handler="cc.task.sample", task_id=uid)
        operator.send_multipart(frames)
        self.assertEqual(CCMessage(self.recv(operator)).get_body()["hosts"], ["host1", "host2"])
        for name, sock in runners.items():
            self.assertEqual(self.recv(sock)[1:], frames[2:], name)
        # host2 answers for itself only: its "host1" claim is its own signer's host
        runners["host2"].send_multipart(signed([], "task.reply." + uid, "host2", task_id=uid,
                                               status="finished"))
        runners["host1"].send_multipart(signed([], "task.reply." + uid, "host1", task_id=uid,
                                               status="finished"))
        seen = {}
        while "summary" not in seen:
            body = CCMessage(self.recv(operator)).get_body()
            seen[body.get("host", body["status"])] = body
        self.assertEqual(seen["summary"]["counts"], {"finished": 2})

    def test_infofile_log_and_log_copy_only_as_self(self):
        sock = self.dealer(self.router.endpoint)
        info = dict(filename="info.pg", mtime=time.time(), data="aGVsbG8=", ack=True)
        sock.send_multipart(signed([b"Q1"], "pub.infofile", "host2", hostname="host1", **info))
        reply = CCMessage(self.recv(sock))
        self.assertEqual((reply.type, reply.get_body()["code"]), ("error", "forbidden"))
        sock.send_multipart(signed([b"Q2"], "pub.infofile", "host2",
                                   **dict(info, mtime=9e9)))  # fmt: skip
        reply = CCMessage(self.recv(sock))
        self.assertEqual(reply.get_body()["code"], "invalid")
        self.assertIn("max-clock-skew", reply.get_body()["msg"])
        sock.send_multipart(signed([b"Q3"], "pub.infofile", "host2", **info))
        self.assertEqual(CCMessage(self.recv(sock)).get_body()["status"], "written")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "info", "host1")))
        self.assertEqual(read_file(os.path.join(self.tmp, "info", "host2", "info.pg")), b"hello")
        # logs: its own are written, another host's refused, every field escaped
        log = dict(job_name="app", log_level="INFO\nFAKE", log_msg="one\ntwo", log_pid=1)
        sock.send_multipart(signed([], "log.info", "host2", hostname="host1", **log))
        sock.send_multipart(signed([], "log.info", "host2", **log))
        path = os.path.join(self.tmp, "logs", "host2", "app.log")
        text = wait_for(lambda: read_file(path), what="host2's log").decode()
        self.assertEqual(text.count("\n"), 1, text)
        self.assertIn("INFO\\nFAKE host2 app[1] one\\ntwo", text)
        self.router.wait_stat("logwriter.forbidden")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "logs", "host1")))
        # log copies: another host's fragment refused, its own written
        tail = dict(filename="/var/log/pg.log", fpos=0, origin=0, st_dev=1, st_ino=11,
                    op_mode="classic", mode="b", comp="", ack=True, data="aGVsbG8K")
        sock.send_multipart(signed([b"T1"], "pub.logtail", "host2", hostname="host1", **tail))
        reply = CCMessage(self.recv(sock))
        self.assertEqual((reply.type, reply.get_body()["code"]), ("error", "forbidden"))
        sock.send_multipart(signed([b"T2"], "pub.logtail", "host2", **tail))
        self.assertEqual(CCMessage(self.recv(sock)).type, "reply.pub.logtail")
        self.assertEqual(read_file(os.path.join(self.tmp, "tails", "host2--pg.log")), b"hello\n")
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "tails", "host1--pg.log")))


class TestHostSigners(CCTestCase):
    def test_a_relay_key_writes_for_the_hosts_it_is_given_only(self):
        section = ccserver_section("relayed", role="end-service", cms_keystore=pki.dir,
                                   cms_verify_ca="ca", host_signers="relays")  # fmt: skip
        ini = section + VERIFYING_ROUTER.split("[policy]")[0] + "[relays]\napp-* = CN=host2\n"
        server = self.start_server("relayed", ini)
        sock = self.dealer(server.endpoint)
        info = dict(filename="info.pg", mtime=time.time(), data="aGVsbG8=", ack=True)
        sock.send_multipart(signed([b"Q1"], "pub.infofile", "host2", hostname="app-1", **info))
        self.assertEqual(CCMessage(self.recv(sock)).get_body()["status"], "written")
        sock.send_multipart(signed([b"Q2"], "pub.infofile", "host2", hostname="host1", **info))
        self.assertEqual(CCMessage(self.recv(sock)).get_body()["code"], "forbidden")
        self.assertEqual(read_file(os.path.join(self.tmp, "info", "app-1", "info.pg")), b"hello")


class TestUnverifiedRoutes(CCTestCase):
    """Where nothing verifies: replies bound to routes, two ccs on one name, clean stops."""

    def setUp(self):
        super().setUp()
        self.router = self.start_server("router", ROUTER)

    def register(self, sock, host, runner_id):
        body = {"host": host, "runner_id": runner_id, "period": 30}
        sock.send_multipart(CCMessage.build("task.register", body).frames)

    def test_reply_from_another_hosts_route_is_dropped(self):
        runner, client = self.task_sent()
        other = self.dealer(self.router.endpoint)
        self.register(other, "h2", "b")
        self.router.wait_stat("task.register", 2)
        self.recv(runner)
        forged = {"task_id": "t1", "status": "finished"}
        other.send_multipart(CCMessage.build("task.reply.t1", forged).frames)
        self.router.wait_stat("task.forbidden")
        runner.send_multipart(CCMessage.build("task.reply.t1", dict(forged, status="failed")).frames)
        self.assertEqual(CCMessage(self.recv(client)).get_body()["status"], "failed")

    def test_two_live_runners_on_one_host_name_are_warned_about(self):
        first, second = self.dealer(self.router.endpoint), self.dealer(self.router.endpoint)
        self.register(first, "db1", "a")
        self.router.wait_stat("task.register")
        self.register(second, "db1", "b")
        self.router.wait_stat("task.register", 2)
        self.register(first, "db1", "a")
        match = self.router.wait_log(r"host db1 is registered by two live task runners, routes "
                                     r"(\S+) and (\S+): two ccs")  # fmt: skip
        self.assertNotEqual(match.group(1), match.group(2))
        self.router.wait_stat("task.register_conflict")
        hosts = self.query(self.dealer(self.router.endpoint), "task.hosts", {}).get_body()["hosts"]
        self.assertIn("routes", hosts[0]["conflict"])

    def task_sent(self):
        """(runner, client): runner registered h1 as "a", client sent it task t1."""
        runner = self.dealer(self.router.endpoint)
        self.register(runner, "h1", "a")
        self.router.wait_stat("task.register")
        client = self.dealer(self.router.endpoint)
        fields = {"task_host": "h1", "task_handler": "cc.task.sample", "task_id": "t1"}
        self.assertEqual(self.query(client, "task.send.t1", fields).get_body()["status"],
                         "forwarded")  # fmt: skip
        return runner, client

    def test_clean_stop_unregisters_at_once(self):
        runner, client = self.task_sent()
        stale = {"host": "h1", "runner_id": "someone-else"}
        runner.send_multipart(CCMessage.build("task.unregister", stale).frames)
        self.router.wait_stat("task.unregister_stale")
        runner.send_multipart(CCMessage.build("task.unregister", dict(stale, runner_id="a")).frames)
        final = CCMessage(self.recv(client)).get_body()
        self.assertEqual(final["status"], "failed")
        self.assertIn("the task runner on h1 stopped", final["feedback"]["msg"])
        hosts = self.query(client, "task.hosts", {}, qid=b"Q2").get_body()["hosts"]
        self.assertEqual(hosts, [])

    def test_task_the_router_fails_is_stopped_on_its_host(self):
        runner, client = self.task_sent()
        self.assertEqual(CCMessage(self.recv(runner)).type, "task.send.t1")
        final = CCMessage(self.recv(client)).get_body()  # the runner stays silent
        self.assertEqual(final["status"], "failed")
        self.assertIn("task-ack-timeout", final["feedback"]["msg"])
        stop = CCMessage(self.recv(runner))
        self.assertEqual(stop.type, "task.stop.t1")
        self.router.wait_stat("task.stop_sent")

    def test_huge_numbers_are_bad_tasks_not_crashes(self):
        body = {"host": "h2", "runner_id": "b", "period": 10**400}
        self.dealer(self.router.endpoint).send_multipart(
            CCMessage.build("task.register", body).frames)  # fmt: skip
        self.router.wait_stat("task.register")

    def test_huge_host_timeout_is_a_bad_task_not_a_crash(self):
        runner = self.dealer(self.router.endpoint)
        self.register(runner, "h1", "a")
        self.router.wait_stat("task.register")
        fields = {"task_host": ["h1"], "task_handler": "cc.task.sample", "host_timeout": 10**400}
        reply = self.query(self.dealer(self.router.endpoint), "task.send.x1", fields)
        self.assertEqual((reply.type, reply.get_body()["code"]), ("error", "bad-task"))


#: the task runner verifies, signs as its host, and runs cc.task.* for operators only
RUNNER_OPTIONS = """\
cms-keystore = {pki}
cms-verify-ca = ca
cms-sign = testhost
task-policy = task-policy
router-signers = CN=router
audit-log = {tmp}/runner-audit.log
max-tasks = 2
"""
TASK_POLICY = """
[task-policy]
cc.task = CN=ops-*
"""


class TestRunnerDecidesOnTheRequester(CCTestCase):
    """A jobmgr-run task runner that verifies, with a task policy, behind a non-verifying
    router: the router cannot launder a task, single or fan-out."""

    def setUp(self):
        super().setUp()
        self.router = self.start_server("router", ROUTER)
        host = HOST.replace("[d:taskrunner]\n", "[d:taskrunner]\n" + RUNNER_OPTIONS, 1)
        host = host.replace("[cc.task.sample]\n", "[cc.task.sample]\nmax-run-time = 4\n")
        host += TASK_POLICY
        self.host = self.start_server("host", host, router=self.router.endpoint, pki=pki.dir)
        self.router.wait_stat("task.register", timeout=15)
        self.client = self.dealer(self.router.endpoint)
        self.audit = os.path.join(self.tmp, "runner-audit.log")
        self.inbox = {}  # task id -> its replies so far

    def send(self, signer, target="testhost", qid=b"Q1", **extra):
        uid = uuid.uuid4().hex
        fields = dict(task_host=target, task_handler="cc.task.sample", task_id=uid, delay=0.05)
        fields.update(extra)
        if signer is None:
            frames = CCMessage.build("task.send." + uid, fields, route=[qid]).frames
        else:
            frames = signed([qid], "task.send." + uid, signer, **fields)
        self.client.send_multipart(frames)
        return uid

    def until_final(self, uid, timeout=20):
        """``uid``'s replies up to its final one (a fan-out's: its summary); the replies of
        other tasks read meanwhile are kept for them."""
        got = self.inbox.setdefault(uid, [])
        while True:
            for n, body in enumerate(got):
                final = ("summary",) if "host" in body else ("finished", "failed", "stopped",
                                                             "summary")  # fmt: skip
                if body.get("status") in final:
                    return got[: n + 1]
            body = CCMessage(self.recv(self.client, timeout)).get_body()
            self.inbox.setdefault(body.get("task_id"), []).append(body)

    def until_running(self, uid):
        """``uid``'s replies so far, after reading one more message."""
        body = CCMessage(self.recv(self.client)).get_body()
        self.inbox.setdefault(body.get("task_id"), []).append(body)
        return self.inbox.get(uid, [])

    def test_unsigned_and_host_signed_tasks_never_start(self):
        unsigned_fanout = self.send(None, target=["testhost"])
        self.host.wait_log(r"invalid message from \S+ \(unsigned\)")
        host_signed = self.send("host2", qid=b"Q2")
        final = self.until_final(host_signed)[-1]
        self.assertEqual((final["status"], final["feedback"]["code"]), ("failed", "forbidden"))
        host_fanout = self.send("host2", target="test*", qid=b"Q3")
        got = self.until_final(host_fanout)
        self.assertEqual(got[-1]["counts"], {"failed": 1}, got)
        good = self.send("ops-alice", target=["testhost"], qid=b"Q4")
        got = self.until_final(good)
        self.assertEqual(got[-1]["counts"], {"finished": 1}, got)
        lines = audit_lines(self.audit)
        outcomes = {(line["uid"], line["outcome"]) for line in lines}
        self.assertIn((host_signed, "forbidden"), outcomes)
        self.assertIn((good, "finished"), outcomes)
        self.assertNotIn(unsigned_fanout, {line["uid"] for line in lines})
        self.assertTrue(all("Common Name: " in line["signer"]["subject"] for line in lines))

    def test_bounds_max_tasks_run_time_stop_and_sections(self):
        burst = [self.send("ops-alice", qid=b"B%d" % n, delay=0.3) for n in range(6)]
        finals = {uid: self.until_final(uid)[-1] for uid in burst}
        busy = [f for f in finals.values() if "max-tasks" in str(f.get("feedback"))]
        self.assertEqual(len(busy), 4, finals)
        self.assertEqual(sum(f["status"] == "finished" for f in finals.values()), 2, finals)
        overdue = self.send("ops-alice", qid=b"O1", delay=100)
        final = self.until_final(overdue)[-1]
        self.assertEqual(final["status"], "failed")
        self.assertIn("ran longer than max-run-time = 4 s", final["feedback"]["msg"])
        stopped = self.send("ops-alice", qid=b"S1", delay=100)
        wait_for(lambda: any(b.get("status") == "launched" for b in self.until_running(stopped)),
                 what="the task launched")  # fmt: skip
        self.client.send_multipart(signed([b"S2"], "task.stop." + stopped, "host2"))
        self.host.wait_log(r"task %s: stop refused" % stopped)
        self.client.send_multipart(signed([b"S3"], "task.stop." + stopped, "ops-alice"))
        self.assertEqual(self.until_final(stopped)[-1]["status"], "stopped")
        for section in ("routes", "ccserver", "h:jobmgr"):
            uid = self.send("ops-alice", qid=b"R1", task_handler=section)
            final = self.until_final(uid)[-1]
            self.assertEqual(final["status"], "failed", section)
            self.assertIn(final["feedback"]["code"], ("bad-task", "not-configured"), section)


#: test_gate's dbhandler, with a function policy and an audit trail
DB_SERVER = GATE_DB_SERVER.replace("allowed-functions = cct.record\n", """\
allowed-functions = cct.record, cct.count
function-policy = db-policy
audit-log = {tmp}/db-audit.log

[db-policy]
cct.record = CN=ops-*
cct = *
""")


class TestDatabasePolicy(pgcluster.RecordingSchema, CCTestCase):
    """A real PostgreSQL behind a verifying dbhandler with a function policy."""

    def test_host_key_cannot_call_a_write_function_operator_can(self):
        section = ccserver_section("db", role="end-service", cms_keystore=pki.dir,
                                   cms_verify_ca="ca")  # fmt: skip
        server = self.start_server("db", section + DB_SERVER, dsn=self.pg.dsn())
        sock = self.dealer(server.endpoint)
        record = {"function": "cct.record", "return": "one"}
        sock.send_multipart(signed([b"Q1"], "db.call", "host2", params=["from host2"], **record))
        reply = CCMessage(self.recv(sock))
        self.assertEqual((reply.type, reply.get_body()["code"]), ("error", "forbidden"))
        self.assertIn("[db-policy] cct.record", reply.get_body()["msg"])
        sock.send_multipart(signed([b"Q2"], "db.call", "host2", function="cct.count",
                                   **{"return": "one"}))  # fmt: skip
        self.assertNotEqual(CCMessage(self.recv(sock)).type, "error")
        sock.send_multipart(signed([b"Q3"], "db.call", "ops-alice", params=["by alice"], **record))
        self.assertNotEqual(CCMessage(self.recv(sock)).type, "error")
        self.assertEqual(self.rows(), ["by alice"])
        server.wait_stat("h:db.errors.forbidden")
        lines = audit_lines(os.path.join(self.tmp, "db-audit.log"))
        self.assertEqual([(line["function"], line["outcome"]) for line in lines],
                         [("cct.record", "forbidden"), ("cct.count", "allowed"),
                          ("cct.record", "allowed")])  # fmt: skip
        self.assertIn("Common Name: host2", lines[0]["signer"]["subject"])
        self.assertEqual(lines[2]["signer"]["issuer"], "Common Name: ca, Organization: cc test")


#: test_daemon_taskexec's taskrouter without its [ccserver]
ROUTES = ROUTER[ROUTER.index("[routes]") :]


class TestAuditAndStartChecks(CCTestCase):
    def test_unwritable_audit_trail_is_counted_and_the_task_goes_on(self):
        ini = ROUTER.replace("[h:taskrouter]\n", "[h:taskrouter]\naudit-log = /dev/full\n")
        router = self.start_server("router", ini)
        runner = self.dealer(router.endpoint)
        body = {"host": "h1", "runner_id": "a"}
        runner.send_multipart(CCMessage.build("task.register", body).frames)
        router.wait_stat("task.register")
        fields = {"task_host": "h1", "task_handler": "cc.task.sample", "task_id": "t1"}
        reply = self.query(self.dealer(router.endpoint), "task.send.t1", fields)
        self.assertEqual(reply.get_body()["status"], "forwarded")
        self.assertEqual(CCMessage(self.recv(runner)).type, "task.send.t1")
        router.wait_stat("audit.failed")
        router.wait_log(r"cannot write the audit trail /dev/full")

    def test_policy_without_verification_and_a_missing_audit_dir_are_config_errors(self):
        ini = ccserver_section("router", policy="policy") + ROUTES + "\n[policy]\ntask = *\n"
        self.assertIn("policy = policy needs cms-verify-ca", self.start_failing("router", ini))
        ini = ROUTER.replace("[h:taskrouter]\n", "[h:taskrouter]\naudit-log = /nonexistent/a\n")
        self.assertIn("audit-log = /nonexistent/a", self.start_failing("router2", ini))

    def test_verifying_router_and_dbhandler_without_policy_warn(self):
        section = ccserver_section("router", role="end-service", cms_keystore=pki.dir,
                                   cms_verify_ca="ca")  # fmt: skip
        routes = ROUTES.replace("\n", "\ndb = h:db\n", 1)
        db = "\n[h:db]\nhandler = dbhandler\ndb = dbname=none host=/nonexistent\n"
        router = self.start_server("router", section + routes + db)
        router.wait_log(r"WARNING.*no policy: every key the CAs trust may send tasks to every host")
        router.wait_log(r"WARNING.*no policy: every key the CAs trust may call every allowed "
                        r"function")  # fmt: skip


class TestRealRunner(CCTestCase):
    def test_runner_that_stops_cleanly_unregisters_at_once(self):
        router = self.start_server("router", ROUTER)
        host = self.start_server("host", HOST, router=router.endpoint)
        router.wait_stat("task.register", timeout=15)
        pid = wait_for(lambda: host.job_status("d:taskrunner").get("pid", "").isdigit()
                       and int(host.job_status("d:taskrunner")["pid"]), what="the runner's pid")
        os.kill(pid, signal.SIGTERM)  # it stops cleanly; jobmgr starts a new one
        router.wait_stat("task.unregister")
        router.wait_log(r"host testhost: task runner stopped")

    def test_host_cc_that_stops_cleanly_unregisters_its_runner(self):
        """jobmgr stops first, so the runner's task.unregister still finds the proxy."""
        router = self.start_server("router", ROUTER)
        host = self.start_server("host", HOST, router=router.endpoint)
        router.wait_stat("task.register", timeout=15)
        self.assertEqual(host.stop(), 0)
        router.wait_stat("task.unregister")
        router.wait_log(r"host testhost: task runner stopped")

    def test_module_only_in_the_working_directory_is_not_run(self):
        router = self.start_server("router", ROUTER)
        planted = os.path.join(self.tmp, "planted")
        os.makedirs(planted)
        marker = os.path.join(self.tmp, "ran")
        with open(os.path.join(planted, "mod.py"), "w", encoding="utf8") as f:
            f.write("open(%r, 'w').close()\n" % marker)
        self.start_server("host", HOST + "\n[planted.mod]\n", router=router.endpoint)
        router.wait_stat("task.register", timeout=15)
        client = self.dealer(router.endpoint)
        fields = {"task_host": "testhost", "task_handler": "planted.mod", "task_id": "p1"}
        client.send_multipart(CCMessage.build("task.send.p1", fields, route=[b"Q1"]).frames)
        while True:
            body = CCMessage(self.recv(client, 20)).get_body()
            if body.get("status") in ("finished", "failed", "stopped"):
                break
        self.assertEqual(body["status"], "failed")
        self.assertIn("No module named", body["feedback"]["out"])
        self.assertFalse(os.path.exists(marker))
