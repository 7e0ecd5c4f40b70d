"""A captured signed message cannot be replayed, in any encoding, through a real server.

Each variant is a re-encoding an attacker can make without the key (made by
:mod:`cmsedit` from ``openssl cms -sign`` output) and is first checked to pass
``openssl cms -verify`` with the same body: a real threat, not a broken signature.
The server answers the original, then refuses the variant: as a ``replay`` when the
variant is a DER signature cc reads, as ``bad-signature`` when it is not DER or names
its signer otherwise than exactly.
"""

import json
import shutil
import tempfile
import time
import unittest

import zmq
from asn1crypto import x509
from cmsedit import der_of_pem, ecdsa_twin, envelope_variants, signature_variants
from harness import CCTestCase, ServerProcess, ccserver_section
from pki import PKI

from cc.message import CCMessage

pki: PKI = None  # type: ignore[assignment]

ECHO = """
[routes]
echo = h:echo

[h:echo]
handler = echo
"""

#: what the server answers each re-encoding of a signature it has accepted
SIGNATURE_VARIANTS = {
    "extra-certificate": "replay",
    "certificates-reordered": "replay",
    "attached-content": "replay",
    "digest-null-toggled": "replay",
    "signature-algorithm-null-toggled": "replay",
    "digest-algorithm-added": "replay",
    "signer-by-key-identifier": "replay",
    "signature-algorithm-oid": "replay",
    "crl-added": "bad-signature",
    "unsigned-attrs": "bad-signature",
    "ber-indefinite-length": "bad-signature",
    "non-minimal-length": "bad-signature",
    "trailing-bytes": "bad-signature",
    "signed-data-version": "bad-signature",
    "signer-info-version": "bad-signature",
    "issuer-other-string-type": "bad-signature",
    "issuer-other-case": "bad-signature",
}

#: envelopes are opened leniently (what is inside is what is verified): all are replays
ENVELOPE_VARIANTS = (
    "envelope-ber-length",
    "envelope-decoy-recipient",
    "envelope-unprotected-attrs",
    "envelope-trailing-bytes",
    "re-enveloped",
    "inner-re-encoded",
)


def setUpModule():
    global pki
    pki = PKI()
    pki.make_ec()
    pki.make_crl("empty.crl")


def tearDownModule():
    shutil.rmtree(pki.dir, ignore_errors=True)


def body_of(name, **fields):
    body = {"req": "echo.request", "time": time.time(), "hostname": "h1", "target": name}
    body.update(fields)
    return json.dumps(body).encode()


class ServerOnce(unittest.TestCase):
    """One verifying end-service for all tests of a class (``OPTIONS`` added)."""

    OPTIONS = {"cms_verify_ca": "ca", "cms_time_window": "300"}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cctest-")
        section = ccserver_section(
            "replay", role="end-service", cms_keystore=pki.dir, **cls.OPTIONS
        )
        cls.server = ServerProcess(cls.tmp, "replay", (section + ECHO).replace("{tmp}", cls.tmp))
        cls.server.start()
        cls.context = zmq.Context()
        cls.sock = cls.context.socket(zmq.DEALER)
        cls.sock.setsockopt(zmq.LINGER, 0)
        cls.sock.connect(cls.server.endpoint)

    @classmethod
    def tearDownClass(cls):
        cls.sock.close(0)
        cls.context.term()
        code = cls.server.stop()
        output = cls.server.output()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if code != 0 or "Traceback" in output:
            raise AssertionError("server exited %s:\n%s" % (code, output[-4000:]))

    def exchange(self, qid, body_frame, signature):
        self.sock.send_multipart([qid, b"", b"echo.request", body_frame, signature])
        self.assertTrue(self.sock.poll(10000), "no answer")
        reply = CCMessage(self.sock.recv_multipart())
        self.assertEqual(reply.route, [qid])
        return reply

    def assertAnswered(self, qid, body_frame, signature, target):
        reply = self.exchange(qid, body_frame, signature)
        self.assertEqual(reply.type, "echo.response", reply.get_body())
        self.assertEqual(reply.get_body()["orig_target"], target)

    def assertRefused(self, qid, body_frame, signature, code):
        reply = self.exchange(qid, body_frame, signature)
        self.assertEqual((reply.type, reply.get_body().get("code")), ("error", code))


def variants_of(signature, body):
    """The re-encodings of ``signature`` (by user1, two certificates) of ``body``."""
    return signature_variants(
        signature,
        body,
        extra_cert=der_of_pem(pki.crt("ca2")),
        crl=der_of_pem(pki.path("empty.crl")),
        key_id=x509.Certificate.load(der_of_pem(pki.crt("user1"))).key_identifier,
    )


class TestSignatureReplay(ServerOnce):
    def check_variant(self, name):
        body = body_of(name)
        original = pki.sign("user1", body, "-certfile", pki.crt("ca"))
        variant = variants_of(original, body)[name]
        self.assertNotEqual(variant, original)
        pki.verify(variant, body, tool="cms")  # openssl takes it for the message it was
        self.assertAnswered(b"A" + name.encode(), body, original, name)
        self.assertRefused(b"B" + name.encode(), body, variant, SIGNATURE_VARIANTS[name])

    def test_ecdsa_twin(self):
        body = body_of("twin")
        original = pki.sign("ec1", body)
        twin = ecdsa_twin(original)
        self.assertNotEqual(twin, original)
        pki.verify(twin, body, tool="cms")
        self.assertAnswered(b"A-twin", body, original, "twin")
        self.assertRefused(b"B-twin", body, twin, "replay")

    def test_attached_content_other_than_the_body_refused(self):
        """openssl with ``-content`` refuses it too; the same content attached is a replay
        (TestSignatureReplay.test_attached_content)."""
        body, other = body_of("shown"), body_of("acted-on")
        attached = pki.sign("user1", other, detached=False)
        self.assertRaises(RuntimeError, pki.verify, attached, body, tool="cms")
        self.assertRefused(b"attached", body, attached, "bad-signature")
        self.assertAnswered(b"attached-same", other, attached, "acted-on")

    def test_time_not_a_finite_number_is_stale(self):
        now = b'"%d"' % int(time.time())
        for i, stamp in enumerate((b"NaN", b'"nan"', b"Infinity", b"-Infinity", b"1e999", now)):
            raw = body_of("t%d" % i).replace(b'"time": ', b'"time": ' + stamp + b', "was": ')
            self.assertRefused(b"T%d" % i, raw, pki.sign("user1", raw), "stale")


def add_variant_tests(cls, names):
    """A test per variant name, so that each replay is reported on its own."""
    for name in names:
        setattr(cls, "test_" + name.replace("-", "_"), lambda self, n=name: self.check_variant(n))


add_variant_tests(TestSignatureReplay, SIGNATURE_VARIANTS)


class TestEnvelopeReplay(ServerOnce):
    OPTIONS = {"cms_verify_ca": "ca", "cms_decrypt": "server", "cms_time_window": "300"}

    def check_variant(self, name):
        body = body_of(name)
        inner = pki.sign("user1", body, "-certfile", pki.crt("ca"), detached=False)
        original = pki.encrypt("server", inner)
        if name == "re-enveloped":  # the recipient's certificate is public
            variant = pki.encrypt("server", inner)
        elif name == "inner-re-encoded":
            variant = pki.encrypt("server", variants_of(inner, body)["certificates-reordered"])
        else:
            variant = envelope_variants(original)[name]
        self.assertNotEqual(variant, original)
        self.assertAnswered(b"A" + name.encode(), b"ENC1", original, name)
        self.assertRefused(b"B" + name.encode(), b"ENC1", variant, "replay")


add_variant_tests(TestEnvelopeReplay, ENVELOPE_VARIANTS)


class TestReplayCacheFull(CCTestCase):
    def test_full_cache_refuses_new_messages_and_keeps_old_ones(self):
        server = self.start_server(
            "full",
            ccserver_section(
                "full",
                role="end-service",
                cms_keystore=pki.dir,
                cms_verify_ca="ca",
                cms_time_window="300",
                cms_replay_cache_size="3",
            )
            + ECHO,
        )
        sock = self.dealer(server.endpoint)
        sent = []
        for i in range(4):
            body = body_of("m%d" % i)
            sent.append((body, pki.sign("user1", body)))
            sock.send_multipart([b"Q%d" % i, b"", b"echo.request", *sent[-1]])
            reply = CCMessage(self.recv(sock))
            if i < 3:
                self.assertEqual(reply.type, "echo.response")
        self.assertEqual(reply.get_body()["code"], "replay-cache-full")
        sock.send_multipart([b"R", b"", b"echo.request", *sent[0]])
        self.assertEqual(CCMessage(self.recv(sock)).get_body()["code"], "replay")  # not forgotten
        server.wait_stat("count.invalid.replay-cache-full", 1)
        server.wait_log(r"Invalid CC message \(replay-cache-full\)")

    def test_verifying_without_time_window_warns_at_start(self):
        server = self.start_server(
            "nowindow",
            ccserver_section(
                "nowindow", role="end-service", cms_keystore=pki.dir, cms_verify_ca="ca"
            )
            + ECHO,
        )
        server.wait_log(r"verifying without cms-time-window: .* refused as a replay only for 300 s")
