"""Security end to end: signed and encrypted messages through real servers, roles, CURVE."""

import asyncio
import json
import os
import shutil
import signal
import sys
import time

import zmq
import zmq.auth
from harness import CCTestCase, ccserver_section, wait_for
from pki import PKI
from tornado.ioloop import IOLoop

from cc.client import CCClient
from cc.crypto import CryptoContext
from cc.message import CCMessage
from cc.reqstream import CCReqStream
from cc.stats import Stats

pki: PKI = None  # type: ignore[assignment]


def setUpModule():
    global pki
    pki = PKI()
    pki.make_leaf("revokee", "ca")
    pki.make_ec()
    pki.make_crl("empty.crl")
    pki.revoke("revokee")
    pki.make_crl("revoked.crl")


def tearDownModule():
    shutil.rmtree(pki.dir, ignore_errors=True)


ECHO = """
[routes]
echo = h:echo
log = h:log

[h:echo]
handler = echo

[h:log]
handler = locallogger
"""

PROXY = """
[routes]
echo = h:proxy
log = h:proxy

[h:proxy]
handler = proxy
remote-cc = {remote}
"""


def signed_frames(msgtype, fields, signer="user1", qid=b"Q1", **body_extra):
    """A message signed by ``openssl cms -sign``."""
    body = {"req": msgtype, "time": time.time(), "hostname": "h1"}
    body.update(fields)
    body.update(body_extra)
    raw = json.dumps(body).encode()
    route = [qid] if qid else []
    return route + [b"", msgtype.encode(), raw, pki.sign(signer, raw)]


def log_fields(text):
    return {"log_level": "INFO", "job_name": "job", "log_msg": text, "log_time": time.time()}


class TestSignedServer(CCTestCase):
    def verifying_server(self, name="remote", role="end-service", **options):
        options.setdefault("cms_keystore", pki.dir)
        options.setdefault("cms_verify_ca", "ca")
        options.setdefault("cms_sign", "server")
        return self.start_server(name, ccserver_section(name, role=role, **options) + ECHO)

    def test_signed_request_answered_with_signed_reply(self):
        server = self.verifying_server(cms_time_window="60")
        sock = self.dealer(server.endpoint)
        sock.send_multipart(signed_frames("echo.request", {"target": "x"}))
        reply = CCMessage(self.recv(sock))
        self.assertEqual(reply.type, "echo.response")
        self.assertEqual(reply.get_body()["orig_target"], "x")
        # the reply is signed by the server, and openssl agrees
        self.assertEqual(pki.verify(reply.signature, reply.body_bytes), reply.body_bytes)

    def test_p256_signed_both_ways(self):
        """An ECDSA P-256 server key signs replies; an openssl P-256 signature is accepted."""
        server = self.verifying_server(cms_sign="ec2", cms_time_window="60")
        sock = self.dealer(server.endpoint)
        sock.send_multipart(signed_frames("echo.request", {"target": "ec"}, signer="ec1"))
        reply = CCMessage(self.recv(sock))
        self.assertEqual(reply.get_body()["orig_target"], "ec")
        self.assertEqual(pki.verify(reply.signature, reply.body_bytes, "ecca"), reply.body_bytes)

    def test_rejections_answered_counted_logged(self):
        server = self.verifying_server(cms_time_window="60")
        sock = self.dealer(server.endpoint)
        unsigned = CCMessage.build("echo.request", {"target": "x"}, route=[b"Q1"]).frames
        good = signed_frames("echo.request", {"target": "x"}, qid=b"Q2")
        tampered = list(good)
        tampered[3] = tampered[3].replace(b'"x"', b'"y"')
        cases = [
            (unsigned, "unsigned"),
            (tampered, "bad-signature"),
            (signed_frames("echo.request", {}, signer="stranger"), "untrusted"),
            (signed_frames("echo.request", {}, signer="expired"), "expired"),
            (signed_frames("echo.request", {}, time=time.time() - 3600), "stale"),
            ([b"Q3", b"", b"echo.request", b"ENC1", b"\x30\x00"], "undecryptable"),
        ]
        for frames, code in cases:
            sock.send_multipart(frames)
            reply = CCMessage(self.recv(sock))
            self.assertEqual(reply.type, "error", code)
            self.assertEqual(reply.get_body()["code"], code)
        # the good one is accepted once, its replay is not
        sock.send_multipart(good)
        self.assertEqual(CCMessage(self.recv(sock)).type, "echo.response")
        sock.send_multipart(good)
        self.assertEqual(CCMessage(self.recv(sock)).get_body()["code"], "replay")
        server.wait_stat("count.invalid.unsigned", 1)
        server.wait_stat("count.invalid.replay", 1)
        server.wait_stat("count.invalid", len(cases) + 1)
        server.wait_log(r"Invalid CC message \(untrusted\)")

    def test_burst_judged_one_by_one_answered_in_order(self):
        """A burst (the server judges what one wake-up drains before routing any of it):
        each message gets its own verdict, a replay inside the burst is refused, and the
        replies, accepted and refused alike, come back in the order sent."""
        server = self.verifying_server(cms_time_window="60")
        sender = CryptoContext(keystore=pki.dir, sign_name="user1")
        sock = self.dealer(server.endpoint)
        burst, expected = [], []
        for i in range(30):
            good = sender.seal(
                CCMessage.build("echo.request", {"target": "t%d" % i}, route=[b"Q%d" % i])
            ).frames
            tampered = good[:3] + [good[3].replace(b'"t%d"' % i, b'"x%d"' % i)] + good[4:]
            unsigned = CCMessage.build("echo.request", {"target": "u"}, route=[b"U%d" % i]).frames
            kinds = [
                (good, ("echo.response", "t%d" % i)),
                (unsigned, ("error", "unsigned")),
                ([b"B%d" % i, b"", b"bad type", b"{}"], ("error", "bad-type")),
                (tampered, ("error", "bad-signature")),
            ]
            kinds.insert(1 + i % 4, (good, ("error", "replay")))  # the same again, later
            for frames, reply in kinds:
                burst.append(frames)
                expected.append(reply)
        for frames in burst:
            sock.send_multipart(frames)
        got = []
        for _ in expected:
            body = CCMessage(self.recv(sock)).get_body()
            got.append((body["req"], body.get("orig_target", body.get("code"))))
        self.assertEqual(got, expected)
        self.assertEqual(server.wait_stat("count.invalid.replay", 30), 30)
        self.assertEqual(server.wait_stat("count.invalid.bad-signature", 30), 30)

    def test_encrypted_request_accepted(self):
        server = self.verifying_server(cms_decrypt="server")
        sock = self.dealer(server.endpoint)
        body = json.dumps({"req": "echo.request", "time": time.time(), "target": "e"}).encode()
        envelope = pki.encrypt("server", pki.sign("host2", body, detached=False))
        sock.send_multipart([b"Q1", b"", b"echo.request", b"ENC1", envelope])
        reply = CCMessage(self.recv(sock))
        self.assertEqual(reply.get_body()["orig_target"], "e")
        # signed but not encrypted: refused where decryption is required
        sock.send_multipart(signed_frames("echo.request", {}, qid=b"Q2"))
        self.assertEqual(CCMessage(self.recv(sock)).get_body()["code"], "unencrypted")

    def test_signed_log_through_local_and_proxy_verified_at_remote(self):
        remote = self.verifying_server(cms_time_window="60")
        proxy = self.start_server(
            "proxy", ccserver_section("proxy", role="proxy") + PROXY, remote=remote.endpoint
        )
        local = self.start_server(
            "local", ccserver_section("local", role="local") + PROXY, remote=proxy.endpoint
        )
        sock = self.dealer(local.endpoint)
        sock.send_multipart(signed_frames("log.info", log_fields("signed hello"), qid=None))
        sock.send_multipart(CCMessage.build("log.info", log_fields("unsigned hello")).frames)
        remote.wait_log(r"INFO signed hello \(signed by user1\)")
        remote.wait_stat("count.invalid.unsigned", 1)
        self.assertNotIn("INFO unsigned hello", remote.output())

    def test_cc_send_signs_with_config(self):
        server = self.verifying_server()
        ini = os.path.join(self.tmp, "client.ini")
        with open(ini, "w") as f:
            f.write("[taskclient]\ncms-keystore = %s\ncms-sign = host2\n" % pki.dir)
        out = self.run_command(
            [
                sys.executable,
                "-m",
                "cc.client",
                "-c",
                ini,
                server.endpoint,
                "echo.request",
                "target=s",
            ]
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn('"orig_target": "s"', out.stdout)
        out = self.run_command([sys.executable, "-m", "cc.client", server.endpoint, "echo.request"])
        self.assertEqual(out.returncode, 3, out.stdout)
        self.assertIn('"code": "unsigned"', out.stdout)

    def echo_code(self, sock, signer, qid):
        """Send an echo signed by ``signer``; the error code of the reply, or "ok"."""
        sock.send_multipart(signed_frames("echo.request", {"target": signer}, signer, qid))
        reply = CCMessage(self.recv(sock))
        return "ok" if reply.type == "echo.response" else reply.get_body()["code"]

    def reload(self, server, reloads, **options):
        """Rewrite the server's config with ``options``, SIGHUP, wait for reload ``reloads``."""
        ini = ccserver_section(server.name, role="end-service", **options) + ECHO
        server.write_ini(ini.replace("{tmp}", self.tmp))
        server.send_signal(signal.SIGHUP)
        wait_for(lambda: server.log_text().count("reloaded:") >= reloads, what="reload")

    def test_crl_reread_on_sighup(self):
        """A revoked certificate is refused from the SIGHUP that brings its CRL to the one
        that takes the CRL away."""
        crl = os.path.join(self.tmp, "cc.crl")
        shutil.copy(pki.path("empty.crl"), crl)
        options = dict(cms_keystore=pki.dir, cms_verify_ca="ca", cms_crl=crl)
        server = self.verifying_server(**options)
        sock = self.dealer(server.endpoint)
        self.assertEqual(self.echo_code(sock, "revokee", b"Q1"), "ok")
        shutil.copy(pki.path("revoked.crl"), crl)
        self.reload(server, 1, **options)
        self.assertEqual(self.echo_code(sock, "revokee", b"Q2"), "revoked")
        self.assertEqual(self.echo_code(sock, "user1", b"Q3"), "ok")
        server.wait_stat("count.invalid.revoked", 1)
        server.wait_log(r"Invalid CC message \(revoked\)")
        del options["cms_crl"]
        self.reload(server, 2, **options)
        self.assertEqual(self.echo_code(sock, "revokee", b"Q4"), "ok")

    def test_ca_no_longer_trusted_after_sighup(self):
        server = self.verifying_server()
        sock = self.dealer(server.endpoint)
        self.assertEqual(self.echo_code(sock, "user1", b"Q1"), "ok")  # its chain now cached
        self.reload(server, 1, cms_keystore=pki.dir, cms_verify_ca="ca2")
        self.assertEqual(self.echo_code(sock, "user1", b"Q2"), "untrusted")
        self.assertEqual(self.echo_code(sock, "stranger", b"Q3"), "ok")

    def test_bad_crypto_config_refuses_to_start(self):
        server = self.write_server(
            "bad", ccserver_section("bad", cms_keystore=pki.dir, cms_verify_ca="nosuch") + ECHO
        )
        server.start(wait=False)
        self.assertEqual(server.proc.wait(10), 1)
        self.expected_exit["bad"] = 1
        self.assertIn("nosuch.crt", server.output())


class TestRoles(CCTestCase):
    REMOTEONLY = """
[routes]
x = h:x

[h:x]
handler = plugins.remoteonly
"""

    def test_end_service_runs_original_remote_handlers(self):
        for role in ("end-service", "remote"):
            server = self.start_server(role, ccserver_section(role, role=role) + self.REMOTEONLY)
            reply = self.query(self.dealer(server.endpoint), "x.y", {})
            self.assertEqual(reply.type, "reply.x.y")

    def test_proxy_refuses_end_service_handler_naming_what_it_allows(self):
        out = self.start_failing("p", ccserver_section("p", role="proxy") + self.REMOTEONLY)
        self.assertIn("cannot be run in role proxy", out)
        self.assertRegex(
            out, r"role proxy allows: delay, disposer, echo, filter, locallogger, " r"proxy"
        )

    def test_generic_handlers_run_in_every_role(self):
        for role in ("local", "proxy", "end-service", "remote"):
            server = self.start_server(role, ccserver_section(role, role=role) + ECHO)
            self.assertEqual(
                self.query(self.dealer(server.endpoint), "echo.request", {}).type, "echo.response"
            )

    def test_local_on_public_address_refused_unless_allowed(self):
        ini = ccserver_section("pub", role="local", socket="tcp://0.0.0.0:*") + ECHO
        out = self.start_failing("pub", ini)
        self.assertIn("cc-allow-public = yes", out)
        ini = (
            ccserver_section("ok", role="local", socket="tcp://0.0.0.0:*", cc_allow_public="yes")
            + ECHO
        )
        self.start_server("ok", ini)

    def test_local_on_ipc_allowed(self):
        ini = ccserver_section("ipc", role="local", socket="ipc://{tmp}/cc.sock") + ECHO
        server = self.start_server("ipc", ini)
        self.assertTrue(server.endpoint.startswith("ipc://"))


class TestCurve(CCTestCase):
    def setUp(self):
        super().setUp()
        keys = os.path.join(self.tmp, "keys")
        self.clients = os.path.join(self.tmp, "clients")
        os.makedirs(self.clients)
        out = self.run_command(
            [sys.executable, "-m", "cc.crypto.keygen", keys, "server", "allowed", "unknown"]
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        shutil.copy(os.path.join(keys, "allowed.key"), self.clients)
        self.keys = keys

    def key(self, name, secret=True):
        return os.path.join(self.keys, name + (".key_secret" if secret else ".key"))

    def curve_dealer(self, endpoint, name):
        sock = self.dealer_unconnected()
        public, secret = zmq.auth.load_certificate(self.key(name))
        sock.curve_publickey, sock.curve_secretkey = public, secret
        sock.curve_serverkey, _ = zmq.auth.load_certificate(self.key("server", False))
        sock.connect(endpoint)
        return sock

    def dealer_unconnected(self):
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        self.sockets.append(sock)
        return sock

    def test_allow_list(self):
        server = self.start_server(
            "curve",
            ccserver_section(
                "curve", curve_server_key=self.key("server"), curve_clients_dir=self.clients
            )
            + ECHO,
        )
        allowed = self.curve_dealer(server.endpoint, "allowed")
        self.assertEqual(self.query(allowed, "echo.request", {}).type, "echo.response")
        unknown = self.curve_dealer(server.endpoint, "unknown")
        unknown.send_multipart(CCMessage.build("echo.request", {}, route=[b"Q1"]).frames)
        self.assert_silent(unknown)
        plain = self.dealer(server.endpoint)
        plain.send_multipart(CCMessage.build("echo.request", {}, route=[b"Q1"]).frames)
        self.assert_silent(plain)
        # SIGHUP re-reads the allow-list
        shutil.copy(self.key("unknown", False), self.clients)
        server.send_signal(1)
        server.wait_log(r"CURVE: 2 allowed client keys")
        late = self.curve_dealer(server.endpoint, "unknown")
        self.assertEqual(self.query(late, "echo.request", {}).type, "echo.response")

    def test_proxy_over_curve(self):
        remote = self.start_server(
            "remote",
            ccserver_section(
                "remote", curve_server_key=self.key("server"), curve_clients_dir=self.clients
            )
            + ECHO,
        )
        local = self.start_server(
            "local",
            ccserver_section("local", role="local")
            + PROXY
            + (
                "curve-client-key = %s\ncurve-remote-key = %s\n"
                % (self.key("allowed"), self.key("server", False))
            ),
            remote=remote.endpoint,
        )
        sock = self.dealer(local.endpoint)
        self.assertEqual(self.query(sock, "echo.request", {}).type, "echo.response")


class TestSignedClients(CCTestCase):
    def test_req_stream_signs_and_resends_fresh(self):
        """A resent signed query is signed afresh, so it is not taken for a replay."""
        server = self.start_server(
            "remote",
            ccserver_section(
                "remote",
                role="end-service",
                cms_keystore=pki.dir,
                cms_verify_ca="ca",
                cms_time_window="60",
            )
            + ECHO,
        )
        sender = CryptoContext(keystore=pki.dir, sign_name="host2")
        replies = []

        async def run():
            stream = CCReqStream(
                server.endpoint, IOLoop.current(), self.context, Stats(), seal=sender.seal
            )
            done = asyncio.Event()

            def callback(msg):
                replies.append(msg)
                if len(replies) == 2:
                    done.set()
                return len(replies) < 2

            qid = stream.query(CCMessage.build("echo.request", {"target": "r"}), callback)
            stream.resend(qid)
            await asyncio.wait_for(done.wait(), 10)
            stream.close()

        asyncio.run(run())
        self.assertEqual([r.type for r in replies], ["echo.response", "echo.response"])

    def test_ccclient_signs(self):
        server = self.start_server(
            "remote",
            ccserver_section("remote", role="end-service", cms_keystore=pki.dir, cms_verify_ca="ca")
            + ECHO,
        )
        crypto = CryptoContext(keystore=pki.dir, sign_name="user1")
        with CCClient(server.endpoint, crypto=crypto) as client:
            client.publish("log.info", log_fields("from the client"), blob=b"\x00blob")
            self.assertEqual(client.query("echo.request", {"target": "c"}).type, "echo.response")
        server.wait_log(r"INFO from the client \(signed by user1\)")
