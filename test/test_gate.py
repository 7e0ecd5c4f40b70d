"""One gate: where a process verifies, no handler or daemon sees a body that did not pass.

The registries are walked, so a handler or daemon registered later is covered
without a line here: a handler is expected to read bodies (and so to be
refused unverified input) unless it is one of the few that pass messages on
unread; each daemon is run from its own ``--ini`` template.  Every signature
and envelope is made by the ``openssl`` command (see :mod:`pki`).
"""

import configparser
import inspect
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pgcluster
from harness import WAIT, CCTestCase, ccserver_section, child_env, wait_for
from pki import PKI
from test_daemon_taskexec import HOST, ROUTER

from cc.daemon import DAEMONS, load_daemon_class
from cc.handler import HANDLERS, load_handler_class
from cc.message import CCMessage

pki: PKI = None  # type: ignore[assignment]

#: handlers that pass messages on without reading them (filter and delay read
#: what their forward-to target reads; here that is a disposer)
PASS_ON_UNREAD = {"proxy", "disposer", "filter", "delay"}
#: where a template's URL goes: nothing listens there
NOWHERE = "tcp://127.0.0.1:1"
PATH_RE = re.compile(r"(?<![\w:/])(?:~|/var|/run|/tmp|/etc)/[^\s,;]*")


def setUpModule():
    global pki
    pki = PKI()
    pki.make_leaf("revokee", "ca")
    pki.make_leaf("testhost", "ca")  # the runner's key: a host signs as itself
    pki.make_crl("empty.crl")
    pki.revoke("revokee")
    pki.make_crl("revoked.crl")


def tearDownModule():
    shutil.rmtree(pki.dir, ignore_errors=True)


def body_bytes(msgtype, **fields):
    body = {"req": msgtype, "time": time.time(), "hostname": "h1"}
    body.update(fields)
    return json.dumps(body).encode()


def signed(route, msgtype, signer, **fields):
    """Frames of a message signed by ``signer`` with ``openssl cms -sign``."""
    raw = body_bytes(msgtype, **fields)
    return list(route) + [b"", msgtype.encode(), raw, pki.sign(signer, raw)]


def unsigned(route, msgtype, **fields):
    return list(route) + [b"", msgtype.encode(), body_bytes(msgtype, **fields), b""]


def encrypted(route, msgtype, signer, recipient, **fields):
    """Frames of a message signed by ``signer`` and encrypted to ``recipient`` (ENC1)."""
    inner = pki.sign(signer, body_bytes(msgtype, **fields), detached=False)
    envelope = pki.encrypt(recipient, inner)
    return list(route) + [b"", msgtype.encode(), b"ENC1", envelope]


def template(cls):
    """The sections of a class docstring's ``::`` INI template (its required options)."""
    lines = inspect.getdoc(cls).split("::", 1)[1].splitlines()
    block = []
    for line in lines[1:]:
        if line.strip() and not line.startswith(" "):
            break
        block.append(line)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(textwrap.dedent("\n".join(block)))
    return parser


def runnable(value, tmp):
    """A template value that works here: paths under ``tmp``, URLs to nowhere, free ports."""
    value = re.sub(r"tcp://[\w.*-]+:\d+", NOWHERE, value)

    def path(m):
        return os.path.join(tmp, m.group(0).lstrip("~/").replace("/", "_"))

    return PATH_RE.sub(path, value)


def section_text(name, items, tmp, **override):
    lines = ["[%s]" % name]
    for key, value in items:
        if key not in override:
            lines.append("%s = %s" % (key, runnable(value, tmp)))
    lines.extend("%s = %s" % (k, v) for k, v in override.items())
    return "\n".join(lines) + "\n"


def crypto_options(**extra):
    options = {"cms-keystore": pki.dir, "cms-verify-ca": "ca"}
    options.update(extra)
    return options


class TestHandlerRegistry(CCTestCase):
    """Every registered handler on one verifying server: what reads bodies gets verified ones."""

    def test_every_handler_behind_the_gate(self):
        routes, sections = ["[routes]"], []
        for name in sorted(HANDLERS):
            cls = load_handler_class("h:" + name, name)
            tpl = template(cls)
            own = next(s for s in tpl.sections() if tpl.has_option(s, "handler"))
            override = {k: "h:sink" for k in cls.REFERENCES}
            for key in cls.SECTION_LISTS:  # jobmgr's daemons: those the template defines
                names = [n.strip() for n in tpl.get(own, key).split(",")]
                listed = [n for n in names if tpl.has_section(n)]
                override[key] = ", ".join(listed)
                sections.extend(section_text(n, tpl.items(n), self.tmp) for n in listed)
            sections.append(section_text("h:" + name, tpl.items(own), self.tmp, **override))
            routes.append("gate.%s = h:%s" % (name, name))
        ini = (
            ccserver_section("gate", role=None, cc_stats="2", **crypto_options(cms_sign="server"))
            + "\n".join(routes)
            + "\n[h:sink]\nhandler = disposer\n"
            + "\n".join(sections)
        )
        server = self.start_server("gate", ini)
        sock = self.dealer(server.endpoint)
        replies = {}

        def reply_to(qid):
            def arrived():
                while sock.poll(0):
                    msg = CCMessage(sock.recv_multipart())
                    replies[msg.route[0]] = msg
                return replies.get(qid)

            return wait_for(arrived, what="reply to %r" % qid)

        readers = sorted(set(HANDLERS) - PASS_ON_UNREAD)
        self.assertIn("dbhandler", readers)
        for name in readers:
            with self.subTest(handler=name):
                msgtype = "gate." + name
                ok_key = "count.ok.msg." + msgtype
                cases = [
                    (unsigned([b"U" + name.encode()], msgtype), "unsigned"),
                    (signed([b"S" + name.encode()], msgtype, "stranger"), "untrusted"),
                ]
                for frames, code in cases:
                    sock.send_multipart(frames)
                    reply = reply_to(frames[0])
                    self.assertEqual((reply.type, reply.get_body()["code"]), ("error", code))
                trusted = signed([b"T" + name.encode()], msgtype, "user1")
                sock.send_multipart(trusted)
                server.wait_stat(ok_key, 1)  # the handler got it
                replay = [b"R" + name.encode()] + trusted[1:]
                sock.send_multipart(replay)
                reply = reply_to(replay[0])
                self.assertEqual((reply.type, reply.get_body()["code"]), ("error", "replay"))
        server.wait_stat("count.invalid.unsigned", len(readers))
        server.wait_stat("count.invalid.untrusted", len(readers))
        server.wait_stat("count.invalid.replay", len(readers))
        totals = server.stats_total()
        for name in readers:  # each got its trusted message, and none of the refused ones
            self.assertEqual(totals["count.ok.msg.gate." + name], 1, name)
        # what passes on unread is not held up: proxies forward without verifying
        for name in sorted(PASS_ON_UNREAD & set(HANDLERS)):
            sock.send_multipart(unsigned([], "gate." + name))
            server.wait_stat("count.ok.msg.gate." + name, 1)


class TestDaemonRegistry(CCTestCase):
    """Every registered daemon with a verifying section: the replies it gets pass its gate.

    The test stands in for the daemon's cc (a ROUTER socket) and answers its
    ``job.config`` query, as jobmgr would, with refused answers first.
    """

    def test_every_daemon_behind_the_gate(self):
        modules = {}
        for name in sorted(DAEMONS):
            modules.setdefault(DAEMONS[name], name)  # taskrunner is taskexec
        for module, name in sorted(modules.items()):
            with self.subTest(daemon=name):
                self.check_daemon(name, load_daemon_class(name))

    def start_daemon(self, name, cls, url):
        tpl = template(cls)
        own = tpl.sections()[0]
        override = crypto_options(stats_period="60")
        override = {k.replace("_", "-"): v for k, v in override.items()}
        override.update({k: "0" for k, _ in tpl.items(own) if k.endswith("-port")})
        override["state-file"] = os.path.join(self.tmp, name + ".state")
        ini = "[ccserver]\njob_name = gate\ncc-socket = %s\n\n" % url
        ini += section_text(own, tpl.items(own), self.tmp, **override)
        for other in tpl.sections()[1:]:
            ini += "\n" + section_text(other, tpl.items(other), self.tmp)
        path = os.path.join(self.tmp, name + ".ini")
        with open(path, "w", encoding="utf8") as f:
            f.write(ini)
        env = child_env()
        env.update(
            CC_JOB_NAME=own, CC_SOCKET=url, CC_KEEPALIVE_PERIOD="60", CC_JOBMGR_PID=str(os.getpid())
        )
        out = open(os.path.join(self.tmp, name + ".out"), "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "cc.daemon", name, path, own, "-v"],
            env=env,
            cwd=self.tmp,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        return proc

    def check_daemon(self, name, cls):
        sock, url = self.make_sink()
        proc = self.start_daemon(name, cls, url)
        outfile = os.path.join(self.tmp, name + ".out")
        records = []  # run as by jobmgr, the daemon's log records come as log.* messages

        def output(drain=True):
            while drain and sock.poll(0):
                frames = sock.recv_multipart()
                if frames[2].startswith(b"log."):
                    records.append(json.loads(frames[3])["log_msg"])
            with open(outfile, encoding="utf8", errors="replace") as f:
                return f.read() + "\n".join(records)

        def logged(pattern):
            what = "%r from %s" % (pattern, name)
            return wait_for(lambda: re.search(pattern, output()), what=what)

        try:
            deadline = time.monotonic() + WAIT
            while True:
                self.assertIsNone(proc.poll(), output(drain=False))
                self.assertLess(
                    time.monotonic(), deadline, "no job.config query:\n" + output(drain=False)
                )
                frames = self.recv(sock)
                if frames[3:4] == [b"job.config"]:
                    break
            head = frames[:2]
            answer = dict(config={"gate": "unsigned"})
            sock.send_multipart(unsigned(head, "job.config", **answer))
            logged(r"invalid message from \S+ \(unsigned\)")
            sock.send_multipart(signed(head, "job.config", "stranger", config={"gate": "other ca"}))
            logged(r"invalid message from \S+ \(untrusted\)")
            trusted = signed(head, "job.config", "server", config={"gate": "trusted"})
            sock.send_multipart(trusted)
            logged(r"job.config: \{'gate': 'trusted'\}")
            sock.send_multipart(trusted)
            logged(r"invalid message from \S+ \(replay\)")
            text = output()
            self.assertNotIn("'gate': 'unsigned'", text)
            self.assertNotIn("'gate': 'other ca'", text)
        finally:
            proc.terminate()
            self.assertEqual(proc.wait(WAIT), 0, output())
        self.assertNotIn("Traceback", output())


DB_SERVER = """
[routes]
db = h:db

[h:db]
handler = dbhandler
db = {dsn}
allowed-functions = cct.record
"""


class TestDatabaseGate(pgcluster.RecordingSchema, CCTestCase):
    def db_server(self, **options):
        ini = ccserver_section("db", role="end-service", **options) + DB_SERVER
        return self.start_server("db", ini, dsn=self.pg.dsn())

    def call(self, v):
        return {"function": "cct.record", "params": [v], "return": "one"}

    def test_refused_calls_leave_no_row(self):
        conn = self.pg.connect()
        conn.cursor().execute("truncate cct.log")
        conn.close()
        server = self.db_server(cms_keystore=pki.dir, cms_verify_ca="ca")
        sock = self.dealer(server.endpoint)
        trusted = signed([b"Q3"], "db.call", "user1", **self.call("trusted"))
        cases = [
            (unsigned([b"Q1"], "db.call", **self.call("unsigned")), "unsigned"),
            (signed([b"Q2"], "db.call", "stranger", **self.call("other ca")), "untrusted"),
            (trusted, None),
            ([b"Q4"] + trusted[1:], "replay"),
        ]
        for frames, code in cases:
            sock.send_multipart(frames)
            reply = CCMessage(self.recv(sock))
            self.assertEqual(reply.route, frames[:1])
            if code is None:
                self.assertNotEqual(reply.type, "error", reply.get_body())
            else:
                self.assertEqual((reply.type, reply.get_body()["code"]), ("error", code))
        self.assertEqual(self.rows(), ["trusted"])

    def test_encrypted_call_runs_where_decrypting(self):
        conn = self.pg.connect()
        conn.cursor().execute("truncate cct.log")
        conn.close()
        server = self.db_server(cms_keystore=pki.dir, cms_verify_ca="ca", cms_decrypt="server")
        sock = self.dealer(server.endpoint)
        sock.send_multipart(encrypted([b"Q1"], "db.call", "user1", "server", **self.call("secret")))
        reply = CCMessage(self.recv(sock))
        self.assertNotEqual(reply.type, "error", reply.get_body())
        self.assertEqual(self.rows(), ["secret"])


#: every process signs, encrypts to ``server`` and accepts only what is encrypted to it
SEALED = {
    "cms-keystore": "{pki}",
    "cms-verify-ca": "ca",
    "cms-encrypt": "server",
    "cms-decrypt": "server",
}


def with_options(ini, section, options):
    """``ini`` with ``options`` added at the top of ``[section]``."""
    lines = "".join("%s = %s\n" % kv for kv in options.items())
    return ini.replace("[%s]\n" % section, "[%s]\n%s" % (section, lines), 1)


class TestTaskGate(CCTestCase):
    """Tasks through a real taskrouter, proxy, local cc and a jobmgr-run task runner."""

    def topology(self, router_cms, host_cms, runner_cms):
        """test_daemon_taskexec's scenario, with these ``cms-*`` options."""
        router = self.start_server(
            "router", with_options(ROUTER, "ccserver", router_cms), pki=pki.dir
        )
        host_ini = with_options(HOST, "ccserver", host_cms)
        host = self.start_server(
            "host",
            with_options(host_ini, "d:taskrunner", runner_cms),
            router=router.endpoint,
            pki=pki.dir,
        )
        router.wait_stat("task.register", timeout=15)
        return router, host

    def task(self, task_id):
        return {"task_host": "testhost", "task_handler": "cc.task.sample", "task_id": task_id}

    def replies(self, sock, task_id, until, read=CCMessage.get_body):
        """(task id, status or error code) of each reply, up to ``task_id``'s ``until``."""
        got = []
        while (task_id, until) not in got:
            body = read(CCMessage(self.recv(sock, 20)))
            got.append((body.get("task_id"), body.get("status") or body.get("code")))
        return got

    def test_refused_task_never_starts(self):
        # the router does not verify; the task runner does, and the host signs its job.config
        router, host = self.topology(
            {},
            {"cms-keystore": "{pki}", "cms-sign": "server"},
            {"cms-keystore": "{pki}", "cms-verify-ca": "ca"},
        )
        sock = self.dealer(router.endpoint)
        refused = {"unsigned": uuid.uuid4().hex, "untrusted": uuid.uuid4().hex}
        sock.send_multipart(unsigned([b"Q1"], "task.send." + refused["unsigned"],
                                     **self.task(refused["unsigned"])))  # fmt: skip
        host.wait_log(r"invalid message from \S+ \(unsigned\)")
        sock.send_multipart(signed([b"Q2"], "task.send." + refused["untrusted"], "stranger",
                                   **self.task(refused["untrusted"])))  # fmt: skip
        host.wait_log(r"invalid message from \S+ \(untrusted\)")
        good = uuid.uuid4().hex
        trusted = signed([b"Q3"], "task.send." + good, "user1", **self.task(good))
        sock.send_multipart(trusted)
        got = self.replies(sock, good, "finished")
        statuses = [s for i, s in got if i == good]
        self.assertEqual(statuses[:3], ["forwarded", "starting", "launched"])
        # the same signed task again: the router answers it with the first run's final
        # answer (the host would refuse it as a replay: TestDaemonRegistry shows that)
        sock.send_multipart([b"Q4"] + trusted[1:])
        probe = uuid.uuid4().hex
        sock.send_multipart(signed([b"Q5"], "task.send." + probe, "user1", **self.task(probe)))
        got += self.replies(sock, probe, "finished")
        # replies travel in order: anything the refused ones started would have come before;
        # the router fails them when the host does not acknowledge them (task-ack-timeout)
        for task_id in refused.values():
            self.assertIn(
                [s for i, s in got if i == task_id], (["forwarded"], ["forwarded", "failed"]), got
            )
        self.assertEqual([s for i, s in got if i == good].count("finished"), 2, got)
        self.assertEqual([s for i, s in got if i == good].count("starting"), 1, got)
        self.assertNotIn("already known", host.output())

    def test_runner_reads_its_crl_again_when_the_server_reloads(self):
        """A signer revoked after the runner started: refused once the host cc is reloaded
        (jobmgr HUPs the runner it keeps running), without restarting it."""
        crl = os.path.join(self.tmp, "cc.crl")
        shutil.copy(pki.path("empty.crl"), crl)
        router, host = self.topology(
            {},
            {"cms-keystore": "{pki}", "cms-sign": "server"},
            {"cms-keystore": "{pki}", "cms-verify-ca": "ca", "cms-crl": crl},
        )
        sock = self.dealer(router.endpoint)
        before = uuid.uuid4().hex
        sock.send_multipart(signed([b"Q1"], "task.send." + before, "revokee", **self.task(before)))
        self.assertIn((before, "finished"), self.replies(sock, before, "finished"))
        shutil.copy(pki.path("revoked.crl"), crl)
        host.send_signal(signal.SIGHUP)
        host.wait_log(r"d:taskrunner.*reloaded: keys, CAs and CRLs read again")
        after = uuid.uuid4().hex
        sock.send_multipart(signed([b"Q2"], "task.send." + after, "revokee", **self.task(after)))
        host.wait_log(r"invalid message from \S+ \(revoked\)")
        probe = uuid.uuid4().hex
        sock.send_multipart(signed([b"Q3"], "task.send." + probe, "user1", **self.task(probe)))
        got = self.replies(sock, probe, "finished")
        self.assertIn([s for i, s in got if i == after], (["forwarded"], ["forwarded", "failed"]))
        self.assertEqual(host.log_text().count("Job d:taskrunner started"), 1)  # not restarted

    def test_encrypted_task_runs_where_decrypting(self):
        router, host = self.topology(
            dict(SEALED, **{"cms-sign": "server"}),
            dict(SEALED, **{"cms-sign": "host2"}),
            dict(SEALED, **{"cms-sign": "testhost"}),
        )
        sock = self.dealer(router.endpoint)
        task_id = uuid.uuid4().hex
        frames = encrypted([b"Q1"], "task.send." + task_id, "user1", "server", **self.task(task_id))
        sock.send_multipart(frames)

        def read(msg):  # replies are sealed to "server": opened with openssl
            self.assertEqual(msg.body_bytes, b"ENC1")
            return json.loads(pki.verify(pki.decrypt("server", msg.signature), None))

        statuses = [s for _, s in self.replies(sock, task_id, "finished", read)]
        self.assertEqual(statuses[:3], ["forwarded", "starting", "launched"])
        # a plain (signed, not encrypted) task is refused where decryption is required
        sock.send_multipart(signed([b"Q2"], "task.send.x", "user1", **self.task("x")))
        self.assertEqual(read(CCMessage(self.recv(sock)))["code"], "unencrypted")


class TestBodyBounds(CCTestCase):
    ECHO = "[routes]\necho = h:echo\n[h:echo]\nhandler = echo\n"

    def test_deep_and_large_bodies_refused_before_any_handler(self):
        server = self.start_server(
            "bounds", ccserver_section("bounds", cc_max_body_size="4K") + self.ECHO
        )
        sock = self.dealer(server.endpoint)
        deep = b'{"req": "echo.request", "x": ' + b"[" * 65 + b"]" * 65 + b"}"
        bomb = b"[" * 1000000
        large = body_bytes("echo.request", pad="x" * 5000)
        cases = [(deep, "body-too-deep"), (bomb, "body-too-large"), (large, "body-too-large")]
        for qid, (raw, code) in enumerate(cases):
            route = [b"Q%d" % qid]
            sock.send_multipart(route + [b"", b"echo.request", raw, b""])
            reply = CCMessage(self.recv(sock))
            self.assertEqual((reply.route, reply.get_body()["code"]), (route, code))
        ok = b'{"req": "echo.request", "x": ' + b"[" * 63 + b"]" * 63 + b"}"
        sock.send_multipart([b"Q9", b"", b"echo.request", ok, b""])
        self.assertEqual(CCMessage(self.recv(sock)).type, "echo.response")
        server.wait_stat("count.invalid.body-too-deep", 1)
        server.wait_stat("count.invalid.body-too-large", 2)

    def test_bracket_bomb_within_size_is_refused_as_too_deep(self):
        server = self.start_server("bounds", ccserver_section("bounds") + self.ECHO)
        sock = self.dealer(server.endpoint)
        for bomb in (b"[" * 1000000 + b"]" * 1000000, b'{"a":' * 500000):
            sock.send_multipart([b"Q1", b"", b"echo.request", bomb, b""])
            reply = CCMessage(self.recv(sock))
            self.assertEqual(reply.get_body()["code"], "body-too-deep")
        self.assertEqual(self.query(sock, "echo.request", {}).type, "echo.response")
